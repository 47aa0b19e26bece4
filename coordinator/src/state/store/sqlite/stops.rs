//! Early-stopping records: each decision with the numbers it compared, whether a user
//! resumed the run since, the CPU threads runs trained with, and what the decision logic
//! reads (each run's stored values of one metric).

use std::collections::HashMap;

use ablate_common::spec::early_stopping::Metric;
use rusqlite::{params, OptionalExtension};

use crate::scheduling::scheduler::Millis;
use crate::state::store::records::{ComputeRow, StopInputRow, StopRow};
use crate::state::store::StoreError;
use rusqlite::Connection;

fn stop_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StopRow> {
    let compared: String = row.get(7)?;
    Ok(StopRow {
        run_id: row.get(0)?,
        experiment_id: row.get(1)?,
        rule: row.get(2)?,
        metric: row.get(3)?,
        epoch: row.get(4)?,
        value: row.get(5)?,
        threshold: row.get(6)?,
        compared: serde_json::from_str::<Vec<Option<f64>>>(&compared)
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect(),
        pending: row.get(8)?,
        reason: row.get(9)?,
        stored_epochs: row.get(10)?,
        decided_ms: row.get(11)?,
        resumed_ms: row.get(12)?,
    })
}

const STOP_SELECT: &str = "SELECT run_id, experiment_id, rule, metric, epoch, value, threshold,
    compared_json, pending, reason, stored_epochs, decided_ms, resumed_ms FROM early_stops";

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The stop decisions of an experiment's runs, by run id.
pub(super) fn early_stops(
    conn: &Connection,
    experiment_id: &str,
) -> Result<HashMap<String, StopRow>, StoreError> {
    let sql = format!("{STOP_SELECT} WHERE experiment_id = ?1");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![experiment_id], stop_row)?;
    let mut out = HashMap::new();
    for row in rows {
        let row = row?;
        out.insert(row.run_id.clone(), row);
    }
    Ok(out)
}

/// A run's stop decision.
pub(super) fn early_stop(conn: &Connection, run_id: &str) -> Result<Option<StopRow>, StoreError> {
    let sql = format!("{STOP_SELECT} WHERE run_id = ?1");
    Ok(conn.query_row(&sql, params![run_id], stop_row).optional()?)
}

/// Every run of an experiment with its stored values of `metric`, in run order.
pub(super) fn stop_inputs(
    conn: &Connection,
    experiment_id: &str,
    metric: Metric,
) -> Result<Vec<StopInputRow>, StoreError> {
    let mut stops = early_stops(conn, experiment_id)?;
    let mut stmt = conn.prepare(
        "SELECT id, idx, spec_json, epochs, state FROM runs WHERE experiment_id = ?1
             ORDER BY idx",
    )?;
    let rows = stmt.query_map(params![experiment_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u32>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, u32>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    let mut index_of = HashMap::new();
    for row in rows {
        let (run_id, index, spec_json, epochs, state) = row?;
        let state = state.parse().map_err(|message| StoreError::Corrupt {
            what: "runs.state",
            message,
        })?;
        index_of.insert(run_id.clone(), out.len());
        out.push(StopInputRow {
            stop: stops.remove(&run_id),
            run_id,
            index,
            spec_json,
            epochs,
            state,
            values: Vec::new(),
        });
    }
    // The column name comes from the enum, never from user input.
    let sql = format!(
        "SELECT e.run_id, e.epoch, e.{} FROM epochs e JOIN runs r ON r.id = e.run_id
             WHERE r.experiment_id = ?1",
        metric.as_str()
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![experiment_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u32>(1)?,
            r.get::<_, Option<f64>>(2)?,
        ))
    })?;
    for row in rows {
        let (run_id, epoch, value) = row?;
        if let Some(&i) = index_of.get(&run_id) {
            out[i].values.push((epoch, value.unwrap_or(f64::NAN)));
        }
    }
    for run in &mut out {
        run.values.sort_by_key(|(e, _)| *e);
    }
    Ok(out)
}

/// What each run's compute is counted from, by run id.
pub(super) fn compute_rows(
    conn: &Connection,
    experiment_id: &str,
) -> Result<HashMap<String, ComputeRow>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT id, epochs, gpus, cores FROM runs WHERE experiment_id = ?1")?;
    let rows = stmt.query_map(params![experiment_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            ComputeRow {
                epochs: r.get(1)?,
                gpus: r.get(2)?,
                cores: r.get(3)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Per run of an experiment: (epochs stored, their seconds summed).
pub(super) fn epoch_seconds(
    conn: &Connection,
    experiment_id: &str,
) -> Result<HashMap<String, (u32, f64)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT e.run_id, COUNT(*), COALESCE(SUM(e.seconds), 0) FROM epochs e
             JOIN runs r ON r.id = e.run_id WHERE r.experiment_id = ?1 GROUP BY e.run_id",
    )?;
    let rows = stmt.query_map(params![experiment_id], |r| {
        Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records a stop decision (replacing an earlier, resumed one of the same run).
pub(super) fn insert_stop(conn: &Connection, s: &StopRow) -> Result<(), StoreError> {
    let compared: Vec<Option<f64>> = s.compared.iter().map(|v| finite(*v)).collect();
    let compared = serde_json::to_string(&compared).map_err(|e| StoreError::Corrupt {
        what: "early_stops.compared_json",
        message: e.to_string(),
    })?;
    conn.execute(
        "INSERT OR REPLACE INTO early_stops (run_id, experiment_id, rule, metric, epoch,
                    value, threshold, compared_json, pending, reason, stored_epochs, decided_ms,
                    resumed_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULL)",
        params![
            s.run_id,
            s.experiment_id,
            s.rule,
            s.metric,
            s.epoch,
            s.value.and_then(finite),
            s.threshold.and_then(finite),
            compared,
            s.pending,
            s.reason,
            s.stored_epochs,
            s.decided_ms
        ],
    )?;
    Ok(())
}

/// Notes that a user resumed a stopped run: it is never judged again.
pub(super) fn mark_resumed(conn: &Connection, run_id: &str, now: Millis) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE early_stops SET resumed_ms = ?2 WHERE run_id = ?1",
        params![run_id, now],
    )?;
    Ok(())
}

/// The CPU threads of the worker a run's attempt started on.
pub(super) fn set_cores(conn: &Connection, run_id: &str, cores: u32) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE runs SET cores = ?2 WHERE id = ?1",
        params![run_id, cores],
    )?;
    Ok(())
}
