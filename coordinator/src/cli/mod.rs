//! The `ablate` command line: one module per command; [`run`] dispatches.
//!
//! # Layout
//! - `app`: [`Cli`], the arguments shared by the commands, and [`run`].
//! - `serve`, `submit`, `watch`, `status` (`status_json`), `workers`, `cancel`, `resume`,
//!   `report`,
//!   `validate`, `run_grid`: the
//!   commands (`models` is [`crate::cli_models`]).
//! - `display`: number and time formats shared by the commands.

mod app;
mod cancel;
mod display;
mod report;
mod resume;
mod run_grid;
mod serve;
mod status;
mod status_json;
mod submit;
mod validate;
mod watch;
mod workers;

pub use app::{run, Cli};
