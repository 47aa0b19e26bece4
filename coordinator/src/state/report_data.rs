//! What a report is rendered from, read through the [`Store`]: the store knows rows, this
//! turns them into the report's input ([`ReportData`]).

use super::store::{Store, StoreError};
use crate::report::{ExperimentInfo, ReportData, RunData};
use crate::scheduling::scheduler::Millis;

/// Everything a report of the experiment (by id, or the newest by name) is rendered from,
/// except early stopping (which the coordinator adds); `None` when there is no such
/// experiment.
pub fn report_data(
    store: &dyn Store,
    experiment_id: &str,
    now: Millis,
) -> Result<Option<ReportData>, StoreError> {
    let Some(exp) = store.find_experiment(experiment_id)? else {
        return Ok(None);
    };
    let mut runs = Vec::new();
    for row in store.report_runs(&exp.id)? {
        let wall_s = store
            .run_row(&row.id)?
            .map(|r| r.elapsed_seconds(now))
            .unwrap_or(0.0);
        runs.push(RunData {
            epochs: store.epochs(&row.id)?,
            id: row.id,
            name: row.name,
            model: row.model,
            factors: row.factors,
            params: row.params,
            state: row.state,
            attempts: row.attempts,
            wall_s,
            error: row.error,
        });
    }
    let (file_name, grid_toml) = store.grid_file(&exp.id)?.unwrap_or_default();
    Ok(Some(ReportData {
        experiment: ExperimentInfo {
            id: exp.id.clone(),
            name: exp.name.clone(),
            state: exp.state().to_string(),
        },
        runs,
        early_stopping: None,
        claims: crate::report::claims::claims_of_grid(&grid_toml, &file_name),
    }))
}
