//! [`SqliteStore`]: the SQLite file, its reads, and [`SqliteTx`], the transaction every
//! write goes through.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ablate_common::metrics::{EpochRecord, StepRecord};
use ablate_common::spec::early_stopping::Metric;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tracing::warn;

use super::checkpointer::{Checkpointer, CHECKPOINT_EVERY, WRITER_CHECKPOINT_PAGES};
use super::schema::{MIGRATIONS, SCHEMA_VERSION};
use super::stops;
use crate::scheduling::scheduler::{Change, Demand, Lease, Millis, RunSched, RunState, WorkerInfo};
use crate::state::store::error::corrupt;
use crate::state::store::records::{
    AssignmentRow, EventRow, ExperimentRow, NewEvent, NewExperiment, NewRun, ProgressUpdate,
    ReportRunRow, RunRow,
};
use crate::state::store::records::{ComputeRow, StopInputRow, StopRow};
use crate::state::store::{Store, StoreError, Tx};

/// The write-ahead log's size once a checkpoint has emptied it (SQLite's
/// `journal_size_limit`).
const WAL_SIZE_LIMIT_BYTES: i64 = 16 << 20;

/// The coordinator's SQLite file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// Checkpoints the write-ahead log off the request path (`None`: SQLite's automatic
    /// checkpoint in the writer does it).
    _checkpointer: Option<Checkpointer>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// One write transaction: everything done through it commits together or not at all.
pub struct SqliteTx<'a> {
    tx: rusqlite::Transaction<'a>,
}

impl fmt::Debug for SqliteTx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqliteTx")
    }
}

impl SqliteStore {
    /// Opens (or creates) the store file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_err = |cause| StoreError::Open {
            path: path.to_path_buf(),
            cause,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // NORMAL in WAL mode: a commit is in the log (the OS's page cache) before it returns,
        // so whatever was acknowledged survives the coordinator's process dying at any
        // instant (kill -9, panic, OOM), without an fsync per placement or heartbeat under
        // the state lock. Only an OS crash or power cut can lose the last commits; the file
        // stays consistent, and a placement lost that way is fenced: the run's attempt is
        // the one before, so its worker's next message is refused as stale and it stops.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // SQLite keeps the log at its high-water size for reuse; past this size it truncates
        // the log once a checkpoint has emptied it, so the store does not keep a large log
        // that a burst of placements once needed.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
            .map_err(open_err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(open_err)?;
            tx.execute_batch(sql).map_err(open_err)?;
            tx.pragma_update(None, "user_version", from as i64 + 1)
                .map_err(open_err)?;
            tx.commit().map_err(open_err)?;
        }
        let checkpointer = match Checkpointer::spawn(path, CHECKPOINT_EVERY) {
            Ok(c) => {
                conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
                    .map_err(open_err)?;
                Some(c)
            }
            Err(e) => {
                warn!(store = %path.display(), "checkpoints stay in the writer: {e}");
                None
            }
        };
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
            _checkpointer: checkpointer,
        })
    }

    /// The SQLite file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one transaction; commits when it returns `Ok`, rolls back otherwise.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&SqliteTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = SqliteTx {
            tx: self.conn.transaction()?,
        };
        let out = f(&tx)?;
        tx.tx.commit()?;
        Ok(out)
    }
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path().display().to_string()
    }

    fn transaction(
        &mut self,
        f: &mut dyn FnMut(&dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.write(|tx| f(tx))
    }

    /// Every run's scheduling record (to rebuild the scheduler at start).
    fn load_runs(&self) -> Result<Vec<RunSched>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT r.id, r.experiment_id, e.seq, r.idx, r.gpus, r.state, r.attempt, r.failures,
                    r.max_attempts, r.worker_id, r.devices_json, r.lease_deadline_ms, r.error
             FROM runs r JOIN experiments e ON e.id = r.experiment_id
             ORDER BY e.seq, r.idx",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                RunSched {
                    id: row.get(0)?,
                    experiment_id: row.get(1)?,
                    order: (row.get(2)?, row.get(3)?),
                    demand: Demand::from_gpus(row.get(4)?),
                    state: RunState::Queued,
                    attempt: row.get(6)?,
                    failures: row.get(7)?,
                    max_attempts: row.get(8)?,
                    lease: None,
                    error: row.get(12)?,
                },
                row.get::<_, String>(5)?,
                row.get::<_, Option<String>>(9)?,
                row.get::<_, Option<String>>(10)?,
                row.get::<_, Option<Millis>>(11)?,
            ))
        })?;
        let mut runs = Vec::new();
        for row in rows {
            let (mut run, state, worker, devices, deadline) = row?;
            run.state = state.parse().map_err(|e| corrupt("runs.state", e))?;
            if let Some(worker_id) = worker {
                let devices: Vec<String> = match devices {
                    Some(d) => {
                        serde_json::from_str(&d).map_err(|e| corrupt("runs.devices_json", e))?
                    }
                    None => Vec::new(),
                };
                run.lease = Some(Lease {
                    worker_id,
                    devices,
                    deadline_ms: deadline.unwrap_or(0),
                });
            }
            runs.push(run);
        }
        Ok(runs)
    }

    /// Every registered worker.
    fn load_workers(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, devices_json, threads FROM workers ORDER BY registered_ms",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, u32>(3)?,
            ))
        })?;
        let mut workers = Vec::new();
        for row in rows {
            let (id, name, devices, threads) = row?;
            workers.push(WorkerInfo {
                id,
                name,
                devices: serde_json::from_str(&devices)
                    .map_err(|e| corrupt("workers.devices_json", e))?,
                threads,
                data_roots: Vec::new(),
            });
        }
        Ok(workers)
    }

    /// Every experiment, in submit order.
    fn experiments(&self) -> Result<Vec<ExperimentRow>, StoreError> {
        let sql = format!("{EXPERIMENT_SELECT} GROUP BY e.seq ORDER BY e.seq");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], experiment_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// (id, grid text) of every experiment that has runs not yet terminal.
    fn unfinished_grids(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT e.id, e.grid_toml FROM experiments e WHERE EXISTS (SELECT 1 FROM runs r
             WHERE r.experiment_id = e.id AND r.state IN ('queued', 'running'))
             ORDER BY e.seq",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// (id, user) of every experiment that has runs not yet terminal and was submitted by
    /// a named user.
    fn unfinished_users(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT e.id, e.submitted_by FROM experiments e WHERE e.submitted_by != ''
             AND EXISTS (SELECT 1 FROM runs r WHERE r.experiment_id = e.id
                         AND r.state IN ('queued', 'running'))
             ORDER BY e.seq",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The user who submitted an experiment (`""`: not recorded).
    fn submitted_by(&self, experiment_id: &str) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT submitted_by FROM experiments WHERE id = ?1",
                params![experiment_id],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_default())
    }

    /// An experiment by id, else the newest with that name.
    fn find_experiment(&self, id_or_name: &str) -> Result<Option<ExperimentRow>, StoreError> {
        let sql = format!(
            "{EXPERIMENT_SELECT} WHERE e.id = ?1 OR e.name = ?1 GROUP BY e.seq
             ORDER BY (e.id = ?1) DESC, e.seq DESC LIMIT 1"
        );
        Ok(self
            .conn
            .query_row(&sql, params![id_or_name], experiment_row)
            .optional()?)
    }

    /// The newest experiment submitted from exactly this grid text, with its counts.
    fn find_by_grid(
        &self,
        name: &str,
        grid_toml: &str,
    ) -> Result<Option<ExperimentRow>, StoreError> {
        let sql = format!(
            "{EXPERIMENT_SELECT} WHERE e.name = ?1 AND e.grid_toml = ?2 GROUP BY e.seq
             ORDER BY e.seq DESC LIMIT 1"
        );
        Ok(self
            .conn
            .query_row(&sql, params![name, grid_toml], experiment_row)
            .optional()?)
    }

    /// The runs of an experiment, in order.
    fn run_rows(&self, experiment_id: &str) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!("{RUN_SELECT} WHERE r.experiment_id = ?1 ORDER BY r.idx");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params![experiment_id], run_row_raw)?;
        rows.map(|r| r?.decode()).collect()
    }

    /// One run.
    fn run_row(&self, run_id: &str) -> Result<Option<RunRow>, StoreError> {
        let sql = format!("{RUN_SELECT} WHERE r.id = ?1");
        self.conn
            .query_row(&sql, params![run_id], run_row_raw)
            .optional()?
            .map(RawRunRow::decode)
            .transpose()
    }

    /// The ids of an experiment's runs, in order.
    fn run_ids(&self, experiment_id: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM runs WHERE experiment_id = ?1 ORDER BY idx")?;
        let rows = stmt.query_map(params![experiment_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What an assignment of the run needs.
    fn assignment(&self, run_id: &str) -> Result<Option<AssignmentRow>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT experiment_id, name, spec_json, checkpoint_epoch, checkpoint_file, params
                 FROM runs WHERE id = ?1",
            )?
            .query_row(params![run_id], |row| {
                Ok(AssignmentRow {
                    experiment_id: row.get(0)?,
                    name: row.get(1)?,
                    spec_json: row.get(2)?,
                    checkpoint_epoch: row.get(3)?,
                    checkpoint_file: row.get(4)?,
                    params: row.get(5)?,
                })
            })
            .optional()?)
    }

    /// The stored epochs of a run, in order.
    fn epochs(&self, run_id: &str) -> Result<Vec<EpochRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT epoch, train_loss, train_acc, eval_loss, eval_acc, lr, seconds, images_per_sec
             FROM epochs WHERE run_id = ?1 ORDER BY epoch",
        )?;
        let rows = stmt.query_map(params![run_id], |row| {
            let f = |i: usize| -> rusqlite::Result<f64> {
                Ok(row.get::<_, Option<f64>>(i)?.unwrap_or(f64::NAN))
            };
            Ok(EpochRecord {
                epoch: row.get(0)?,
                train_loss: f(1)?,
                train_acc: f(2)?,
                eval_loss: f(3)?,
                eval_acc: f(4)?,
                lr: f(5)?,
                seconds: f(6)?,
                images_per_sec: f(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sampled step losses of a run, in order.
    fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT epoch, step, loss FROM steps WHERE run_id = ?1 ORDER BY step")?;
        let rows = stmt.query_map(params![run_id], |row| {
            Ok(StepRecord {
                epoch: row.get(0)?,
                step: row.get(1)?,
                loss: row.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The event log of a run (or of every run when `run_id` is `None`), oldest first.
    fn events(&self, run_id: Option<&str>) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT at_ms, run_id, attempt, kind, message FROM events
             WHERE ?1 IS NULL OR run_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![run_id], |row| {
            Ok(EventRow {
                at_ms: row.get(0)?,
                run_id: row.get(1)?,
                attempt: row.get(2)?,
                kind: row.get(3)?,
                message: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The runs of an experiment as its report lists them, in order.
    fn report_runs(&self, experiment_id: &str) -> Result<Vec<ReportRunRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, model, factors_json, params, state, attempt, error
             FROM runs WHERE experiment_id = ?1 ORDER BY idx",
        )?;
        let rows = stmt.query_map(params![experiment_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, u64>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, u32>(6)?,
                row.get::<_, Option<String>>(7)?,
            ))
        })?;
        let mut runs = Vec::new();
        for row in rows {
            let (id, name, model, factors, params, state, attempts, error) = row?;
            let factors: BTreeMap<String, serde_json::Value> =
                serde_json::from_str(&factors).map_err(|e| corrupt("runs.factors_json", e))?;
            runs.push(ReportRunRow {
                id,
                name,
                model,
                factors,
                params,
                state,
                attempts,
                error,
            });
        }
        Ok(runs)
    }

    /// The grid file's name and text an experiment was submitted from.
    fn grid_file(&self, experiment_id: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT file_name, grid_toml FROM experiments WHERE id = ?1",
                params![experiment_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    fn early_stops(&self, experiment_id: &str) -> Result<HashMap<String, StopRow>, StoreError> {
        stops::early_stops(&self.conn, experiment_id)
    }

    fn early_stop(&self, run_id: &str) -> Result<Option<StopRow>, StoreError> {
        stops::early_stop(&self.conn, run_id)
    }

    fn stop_inputs(
        &self,
        experiment_id: &str,
        metric: Metric,
    ) -> Result<Vec<StopInputRow>, StoreError> {
        stops::stop_inputs(&self.conn, experiment_id, metric)
    }

    fn compute_rows(&self, experiment_id: &str) -> Result<HashMap<String, ComputeRow>, StoreError> {
        stops::compute_rows(&self.conn, experiment_id)
    }

    fn epoch_seconds(
        &self,
        experiment_id: &str,
    ) -> Result<HashMap<String, (u32, f64)>, StoreError> {
        stops::epoch_seconds(&self.conn, experiment_id)
    }
}

const EXPERIMENT_SELECT: &str = "SELECT e.seq, e.id, e.name, e.description, e.submitted_ms,
    COUNT(r.id),
    COALESCE(SUM(r.state = 'queued'), 0), COALESCE(SUM(r.state = 'running'), 0),
    COALESCE(SUM(r.state = 'finished'), 0), COALESCE(SUM(r.state = 'failed'), 0),
    COALESCE(SUM(r.state = 'cancelled'), 0), COALESCE(SUM(r.state = 'stopped'), 0)
    FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.id";

fn experiment_row(row: &Row<'_>) -> rusqlite::Result<ExperimentRow> {
    Ok(ExperimentRow {
        seq: row.get(0)?,
        id: row.get(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        submitted_ms: row.get(4)?,
        runs: row.get(5)?,
        queued: row.get(6)?,
        running: row.get(7)?,
        finished: row.get(8)?,
        failed: row.get(9)?,
        cancelled: row.get(10)?,
        stopped: row.get(11)?,
    })
}

const RUN_SELECT: &str = "SELECT r.id, r.experiment_id, r.name, r.model, r.state, r.attempt,
    r.worker_id, r.epochs, r.current_epoch, r.current_step, r.steps_per_epoch, r.last_loss,
    (SELECT MAX(eval_acc) FROM epochs WHERE run_id = r.id),
    (SELECT eval_acc FROM epochs WHERE run_id = r.id ORDER BY epoch DESC LIMIT 1),
    (SELECT COUNT(*) FROM epochs WHERE run_id = r.id),
    r.error, r.wall_s, r.attempt_started_ms, r.checkpoint_epoch, r.checkpoint_file, r.gpus
    FROM runs r";

/// A run row before its state is parsed.
struct RawRunRow {
    row: RunRow,
    state: String,
}

impl RawRunRow {
    fn decode(self) -> Result<RunRow, StoreError> {
        let mut row = self.row;
        row.state = self.state.parse().map_err(|e| corrupt("runs.state", e))?;
        Ok(row)
    }
}

fn run_row_raw(row: &Row<'_>) -> rusqlite::Result<RawRunRow> {
    Ok(RawRunRow {
        state: row.get(4)?,
        row: RunRow {
            id: row.get(0)?,
            experiment_id: row.get(1)?,
            name: row.get(2)?,
            model: row.get(3)?,
            state: RunState::Queued,
            attempt: row.get(5)?,
            worker_id: row.get(6)?,
            epochs: row.get(7)?,
            current_epoch: row.get(8)?,
            current_step: row.get(9)?,
            steps_per_epoch: row.get(10)?,
            last_loss: row.get(11)?,
            best_eval_acc: row.get(12)?,
            last_eval_acc: row.get(13)?,
            stored_epochs: row.get(14)?,
            error: row.get(15)?,
            wall_s: row.get(16)?,
            attempt_started_ms: row.get(17)?,
            checkpoint_epoch: row.get(18)?,
            checkpoint_file: row.get(19)?,
            checkpoint_bytes: None,
            gpus: row.get(20)?,
            pending_reason: None,
        },
    })
}

/// A float as SQLite takes it: NaN and infinities (a diverged loss) become NULL.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl SqliteTx<'_> {}

impl Tx for SqliteTx<'_> {
    /// Inserts a new experiment; returns its submit sequence.
    fn insert_experiment(&self, e: &NewExperiment) -> Result<u64, StoreError> {
        self.tx.execute(
            "INSERT INTO experiments (id, name, description, file_name, grid_toml, submitted_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                e.id,
                e.name,
                e.description,
                e.file_name,
                e.grid_toml,
                e.submitted_ms
            ],
        )?;
        Ok(self.tx.last_insert_rowid() as u64)
    }

    /// Records who submitted an experiment.
    fn set_submitted_by(&self, experiment_id: &str, user: &str) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE experiments SET submitted_by = ?2 WHERE id = ?1",
            params![experiment_id, user],
        )?;
        Ok(())
    }

    /// Inserts a new run, `queued`.
    fn insert_run(&self, r: &NewRun) -> Result<(), StoreError> {
        let factors = serde_json::to_string(&r.factors).map_err(|e| corrupt("factors", e))?;
        self.tx.execute(
            "INSERT INTO runs (id, experiment_id, idx, name, model, spec_json, factors_json, gpus,
                               epochs, params, flops, max_attempts, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'queued')",
            params![
                r.id,
                r.experiment_id,
                r.index,
                r.name,
                r.model,
                r.spec_json,
                factors,
                r.gpus,
                r.epochs,
                r.params,
                r.flops,
                r.max_attempts
            ],
        )?;
        Ok(())
    }

    /// Writes a planned scheduler change (state, attempt, lease, timing) and its event.
    fn apply(&self, change: &Change, now: Millis) -> Result<(), StoreError> {
        let run = &change.after;
        let (worker, devices, deadline) = match &run.lease {
            Some(l) => (
                Some(l.worker_id.as_str()),
                Some(serde_json::to_string(&l.devices).map_err(|e| corrupt("devices", e))?),
                Some(l.deadline_ms),
            ),
            None => (None, None, None),
        };
        let updated = self
            .tx
            .prepare_cached(
                "UPDATE runs SET state = ?2, attempt = ?3, failures = ?4, worker_id = ?5,
                    devices_json = ?6, lease_deadline_ms = ?7, error = ?8
             WHERE id = ?1",
            )?
            .execute(params![
                run.id,
                run.state.as_str(),
                run.attempt,
                run.failures,
                worker,
                devices,
                deadline,
                run.error
            ])?;
        if updated != 1 {
            return Err(corrupt("runs", format!("no run `{}` to update", run.id)));
        }
        if change.attempt_started() {
            self.tx.prepare_cached(
                "UPDATE runs SET attempt_started_ms = ?2, started_ms = COALESCE(started_ms, ?2),
                        current_step = 0
                 WHERE id = ?1",
)?.execute(params![run.id, now])?;
        }
        if change.attempt_ended() {
            self.tx.prepare_cached(
                "UPDATE runs SET wall_s = wall_s + MAX(0, ?2 - COALESCE(attempt_started_ms, ?2)) / 1000.0,
                        attempt_started_ms = NULL
                 WHERE id = ?1",
)?.execute(params![run.id, now])?;
        }
        if run.state.is_terminal() && !change.before.state.is_terminal() {
            self.tx
                .prepare_cached("UPDATE runs SET finished_ms = ?2 WHERE id = ?1")?
                .execute(params![run.id, now])?;
        }
        self.log_change(change, now)
    }

    /// Appends to the event log.
    fn event(&self, event: &NewEvent<'_>, now: Millis) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO events (at_ms, experiment_id, run_id, attempt, kind, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                now,
                event.experiment_id,
                event.run_id,
                event.attempt,
                event.kind,
                event.message
            ])?;
        Ok(())
    }

    /// Where a run is, for progress bars.
    fn progress(&self, run_id: &str, p: &ProgressUpdate) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "UPDATE runs SET current_epoch = ?2, current_step = ?3, steps_per_epoch = ?4,
                    last_loss = COALESCE(?5, last_loss)
             WHERE id = ?1",
            )?
            .execute(params![
                run_id,
                p.current_epoch,
                p.current_step,
                p.steps_per_epoch,
                p.last_loss.and_then(finite)
            ])?;
        Ok(())
    }

    /// Stores an epoch's metrics once: returns `false` (and changes nothing) when the run
    /// already has that epoch.
    fn insert_epoch(
        &self,
        run_id: &str,
        attempt: u32,
        e: &EpochRecord,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let inserted = self
            .tx
            .prepare_cached(
                "INSERT OR IGNORE INTO epochs (run_id, epoch, attempt, train_loss, train_acc,
                    eval_loss, eval_acc, lr, seconds, images_per_sec, recorded_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                run_id,
                e.epoch,
                attempt,
                finite(e.train_loss),
                finite(e.train_acc),
                finite(e.eval_loss),
                finite(e.eval_acc),
                finite(e.lr),
                finite(e.seconds),
                finite(e.images_per_sec),
                now
            ])?;
        Ok(inserted == 1)
    }

    /// Stores sampled step losses (a step already stored is kept).
    fn insert_steps(
        &self,
        run_id: &str,
        attempt: u32,
        steps: &[StepRecord],
    ) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO steps (run_id, step, epoch, attempt, loss)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for s in steps {
            stmt.execute(params![run_id, s.step, s.epoch, attempt, finite(s.loss)])?;
        }
        Ok(())
    }

    /// The parameter count a worker measured.
    fn set_params(&self, run_id: &str, params: u64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE runs SET params = ?2 WHERE id = ?1",
            params![run_id, params],
        )?;
        Ok(())
    }

    /// Points the run at its newest checkpoint file.
    fn set_checkpoint(&self, run_id: &str, epoch: u32, file: &str) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE runs SET checkpoint_epoch = ?2, checkpoint_file = ?3 WHERE id = ?1",
            params![run_id, epoch, file],
        )?;
        Ok(())
    }

    /// Registers a worker, or updates one that registers again.
    fn upsert_worker(&self, w: &WorkerInfo, now: Millis) -> Result<(), StoreError> {
        let devices = serde_json::to_string(&w.devices).map_err(|e| corrupt("devices", e))?;
        self.tx.execute(
            "INSERT INTO workers (id, name, devices_json, threads, registered_ms, last_seen_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (id) DO UPDATE SET name = ?2, devices_json = ?3, threads = ?4,
                    last_seen_ms = ?5",
            params![w.id, w.name, devices, w.threads, now],
        )?;
        Ok(())
    }

    fn insert_stop(&self, s: &StopRow) -> Result<(), StoreError> {
        stops::insert_stop(&self.tx, s)
    }

    fn mark_resumed(&self, run_id: &str, now: Millis) -> Result<(), StoreError> {
        stops::mark_resumed(&self.tx, run_id, now)
    }

    fn set_cores(&self, run_id: &str, cores: u32) -> Result<(), StoreError> {
        stops::set_cores(&self.tx, run_id, cores)
    }

    fn remove_worker(&self, worker_id: &str) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM workers WHERE id = ?1", params![worker_id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling::scheduler::Scheduler;
    use crate::state::report_data::report_data;

    fn temp_db(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ablate-store-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("ablate.sqlite")
    }

    fn submit(store: &mut SqliteStore, exp: &str, runs: u32) -> u64 {
        store
            .write(|tx| {
                let seq = tx.insert_experiment(&NewExperiment {
                    id: exp.into(),
                    name: "quick".into(),
                    description: None,
                    file_name: "g.toml".into(),
                    grid_toml: "name = \"quick\"".into(),
                    submitted_ms: 1,
                })?;
                for i in 0..runs {
                    tx.insert_run(&NewRun {
                        id: format!("{exp}-{i}"),
                        experiment_id: exp.into(),
                        index: i,
                        name: format!("lenet seed={i}"),
                        model: "lenet".into(),
                        spec_json: "{}".into(),
                        factors: [("seed".to_string(), serde_json::json!(i))].into(),
                        gpus: 0,
                        epochs: 3,
                        params: 100,
                        flops: 1000,
                        max_attempts: 2,
                    })?;
                }
                Ok(seq)
            })
            .unwrap()
    }

    fn epoch(n: u32, acc: f64) -> EpochRecord {
        EpochRecord {
            epoch: n,
            train_loss: 1.0,
            train_acc: 0.5,
            eval_loss: 0.9,
            eval_acc: acc,
            lr: 0.001,
            seconds: 2.0,
            images_per_sec: 100.0,
        }
    }

    #[test]
    fn state_survives_reopening_and_epochs_are_written_once() {
        let path = temp_db("reopen");
        let mut store = SqliteStore::open(&path).unwrap();
        submit(&mut store, "e1", 2);
        let mut sched = Scheduler::new(10_000);
        for run in store.load_runs().unwrap() {
            sched.insert_run(run);
        }
        let worker = WorkerInfo {
            id: "w1".into(),
            name: "host".into(),
            devices: vec!["cpu".into()],
            threads: 2,
            data_roots: Vec::new(),
        };
        store.write(|tx| tx.upsert_worker(&worker, 5)).unwrap();
        sched.insert_worker(worker.clone());
        let change = sched
            .acquire("w1", &["cpu".into()], 1_000)
            .unwrap()
            .unwrap();
        store.write(|tx| tx.apply(&change, 1_000)).unwrap();
        sched.commit([change]);
        let first = store
            .write(|tx| tx.insert_epoch("e1-0", 1, &epoch(1, 0.5), 2_000))
            .unwrap();
        let again = store
            .write(|tx| tx.insert_epoch("e1-0", 1, &epoch(1, 0.9), 2_100))
            .unwrap();
        assert!(first && !again);
        drop(store);

        // A "restart": a fresh connection sees the lease, the attempt and the one epoch.
        let store = SqliteStore::open(&path).unwrap();
        let runs = store.load_runs().unwrap();
        let r0 = runs.iter().find(|r| r.id == "e1-0").unwrap();
        assert_eq!(r0, sched.run("e1-0").unwrap());
        assert_eq!(r0.lease.as_ref().unwrap().deadline_ms, 11_000);
        assert_eq!(store.load_workers().unwrap(), vec![worker]);
        let epochs = store.epochs("e1-0").unwrap();
        assert_eq!(epochs.len(), 1);
        assert_eq!(epochs[0].eval_acc, 0.5);
        let row = store.run_row("e1-0").unwrap().unwrap();
        assert_eq!(
            (row.state, row.attempt, row.stored_epochs),
            (RunState::Running, 1, 1)
        );
        assert_eq!(row.best_eval_acc, Some(0.5));
        let exp = store.find_experiment("quick").unwrap().unwrap();
        assert_eq!(
            (exp.runs, exp.queued, exp.running, exp.state().as_str()),
            (2, 1, 1, "running")
        );
        let events = store.events(Some("e1-0")).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "started");
    }

    #[test]
    fn a_failing_transaction_changes_nothing() {
        let path = temp_db("rollback");
        let mut store = SqliteStore::open(&path).unwrap();
        submit(&mut store, "e1", 1);
        let result = store.write(|tx| {
            tx.insert_epoch("e1-0", 1, &epoch(1, 0.5), 1)?;
            // The same experiment id again violates the unique constraint.
            tx.insert_experiment(&NewExperiment {
                id: "e1".into(),
                name: "dup".into(),
                description: None,
                file_name: "x".into(),
                grid_toml: String::new(),
                submitted_ms: 2,
            })?;
            Ok(())
        });
        assert!(result.is_err());
        assert!(store.epochs("e1-0").unwrap().is_empty());
        assert_eq!(store.experiments().unwrap().len(), 1);
    }

    #[test]
    fn report_data_has_runs_in_order_with_epochs_and_factors() {
        let path = temp_db("report");
        let mut store = SqliteStore::open(&path).unwrap();
        submit(&mut store, "e1", 3);
        store
            .write(|tx| {
                tx.insert_epoch("e1-1", 1, &epoch(2, 0.7), 1)?;
                tx.insert_epoch("e1-1", 1, &epoch(1, 0.6), 1)?;
                Ok(())
            })
            .unwrap();
        let data = report_data(&store, "e1", 10).unwrap().unwrap();
        assert_eq!(data.experiment.name, "quick");
        assert_eq!(data.experiment.state, "queued");
        let names: Vec<&str> = data.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["lenet seed=0", "lenet seed=1", "lenet seed=2"]);
        let epochs: Vec<u32> = data.runs[1].epochs.iter().map(|e| e.epoch).collect();
        assert_eq!(epochs, [1, 2]);
        assert_eq!(data.runs[2].factors["seed"], serde_json::json!(2));
        assert!(report_data(&store, "nope", 10).unwrap().is_none());
    }

    #[test]
    fn diverged_losses_are_stored_as_missing() {
        let path = temp_db("nan");
        let mut store = SqliteStore::open(&path).unwrap();
        submit(&mut store, "e1", 1);
        let mut e = epoch(1, 0.1);
        e.train_loss = f64::NAN;
        store.write(|tx| tx.insert_epoch("e1-0", 1, &e, 1)).unwrap();
        assert!(store.epochs("e1-0").unwrap()[0].train_loss.is_nan());
    }

    #[test]
    fn newest_experiment_by_name_and_id_first() {
        let path = temp_db("names");
        let mut store = SqliteStore::open(&path).unwrap();
        submit(&mut store, "e1", 1);
        submit(&mut store, "e2", 1);
        assert_eq!(store.find_experiment("quick").unwrap().unwrap().id, "e2");
        assert_eq!(store.find_experiment("e1").unwrap().unwrap().id, "e1");
        assert!(store.find_experiment("other").unwrap().is_none());
    }
}
