//! The ablate coordinator.
//!
//! # Layout
//! - [`scheduler`]: pure scheduling logic: fair share, reservations, packing, leases,
//!   expiry, attempts, fencing, pending reasons (no I/O; unit-tested with explicit clocks);
//!   [`fair_queue`]: its queue and lease indexes.
//! - [`local_fit`]: `ablate run`'s check that its local workers can run the grid.
//! - [`sim`]: the scheduling simulation (`sched-sim`).
//! - [`store`]: the SQLite store; every state change one transaction.
//! - [`state`]: the coordinator state ([`state::Coordinator`]): scheduler + store +
//!   checkpoints behind one lock; the operations the services delegate to.
//! - [`checkpoints`]: checkpoint files under `DATA_DIR/checkpoints/<run>/`.
//! - [`service`]: the gRPC services (`Workers`, `Experiments`): validate, convert, delegate.
//! - [`auth`]: the user and worker tokens (server interceptor per role).
//! - [`session`]: worker session secrets (issued at `Register`, checked on every call).
//! - [`server`]: [`server::serve`] with graceful shutdown and the lease-expiry task.
//! - [`client`]: a connected `Experiments` client with the token.
//! - [`cli`]: the `ablate` commands; [`single_node`]: `ablate run`.
//! - [`dashboard`]: the live dashboard in the browser (`serve --http`, `ablate run`).
//! - [`report`]: rendering an experiment's report (Markdown, HTML, CSV, JSON).
//! - [`tensorboard`]: TensorBoard event files of each run's scalars.
//! - [`claims`]: verdicts on a grid's claims (pure); [`stats`]: the t distribution.
//! - [`cli_models`]: `ablate models`.
//! - [`early_stop`]: the early-stopping rules' decisions from stored epochs (pure; the
//!   coordinator applies them in `state::stopping`).
//! - [`users`]: user names on submits and users' share weights.
//! - [`launcher`]: workers started as cluster jobs (`serve --launcher slurm`): it watches
//!   the queue and acts through an engine; the scheduler does not know it.

pub mod auth;
pub mod checkpoints;
pub mod claims;
pub mod cli;
pub mod cli_models;
pub mod client;
pub mod dashboard;
pub mod early_stop;
pub mod fair_queue;
pub mod launcher;
pub mod local_fit;
pub mod report;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod session;
pub mod sim;
pub mod single_node;
pub mod state;
pub mod stats;
pub mod store;
pub mod tensorboard;
pub mod users;
