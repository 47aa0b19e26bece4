//! The ablate coordinator.
//!
//! # Layout (one folder per concern)
//! - [`scheduling`]: where runs meet devices. The pure [`scheduling::scheduler`] (queue
//!   order, fair share, reservations, placement, leases and their expiry, attempts,
//!   fencing; no I/O, explicit clocks) with its indexes ([`scheduling::fair_queue`]) and
//!   users' shares ([`scheduling::users`]); `ablate run`'s fit check
//!   ([`scheduling::local_fit`]); the scheduling simulation ([`scheduling::sim`],
//!   `sched-sim`).
//! - [`state`]: the coordinator state ([`state::Coordinator`]): scheduler + store +
//!   checkpoints behind one lock, the operations the services delegate to; where a grid
//!   becomes stored runs (`submit`). Under it: the store ([`state::store`]: a trait, SQLite
//!   and in-memory implementations), checkpoint files ([`state::checkpoints`]),
//!   TensorBoard event files ([`state::tensorboard`]) and early stopping
//!   ([`state::stopping`], its rules in [`state::stopping::rules`]).
//! - [`rpc`]: the gRPC layer: the `Workers` and `Experiments` services (validate, convert,
//!   delegate), tokens ([`rpc::auth`]), worker sessions ([`rpc::session`]), the server with
//!   graceful shutdown and the lease-expiry timer ([`rpc::server`]), and the CLI's client
//!   ([`rpc::client`]).
//! - [`report`]: an experiment's report (Markdown, HTML, CSV, JSON), the claims' verdicts
//!   ([`report::verdict`]) and the t distribution they use ([`report::stats`]).
//! - [`cli`]: the `ablate` commands, one module each (`ablate run`'s local cluster is
//!   [`cli::single_node`]).
//! - [`dashboard`]: the live dashboard in the browser (`serve --http`, `ablate run`).
//! - [`launcher`]: workers started as cluster jobs (`serve --launcher slurm`): it watches
//!   the queue and acts through an engine; the scheduler does not know it.

pub mod cli;
pub mod dashboard;
pub mod launcher;
pub mod report;
pub mod rpc;
pub mod scheduling;
pub mod state;
