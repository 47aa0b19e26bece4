//! The `ablate` command line: one module per command; [`run`] dispatches.
//!
//! # Layout
//! - `app`: [`Cli`], the arguments shared by the commands, and [`run`].
//! - `serve`, `submit`, `watch`, `status` (`status_json`), `workers`, `cancel`, `resume`,
//!   `report`, `validate`, `run_grid`, [`models`]: the commands.
//! - [`single_node`]: the local cluster `ablate run` starts.
//! - `display`: number and time formats shared by the commands.

mod app;
mod cancel;
mod display;
pub mod models;
mod report;
mod resume;
mod run_grid;
mod serve;
pub mod single_node;
mod status;
mod status_json;
mod submit;
mod validate;
mod watch;
mod workers;

pub use app::{run, Cli};
