//! Scheduling: which queued run goes to which worker's devices, and when a lease ends.
//!
//! # Layout
//! - [`scheduler`]: the pure scheduler (no I/O; explicit clocks): its types and registry;
//!   `scheduler/placement.rs` (queue order, fair share, reservations, pending reasons),
//!   `scheduler/leases.rs` (renewal, fencing, expiry), `scheduler/outcomes.rs` (complete,
//!   fail, release, cancel).
//! - [`fair_queue`]: its indexes of the queue and of what is leased.
//! - [`users`]: user names on submits and users' share weights.
//! - [`local_fit`]: `ablate run`'s check that its local workers can run the grid.
//! - [`sim`]: the scheduling simulation (`sched-sim`).

pub mod fair_queue;
pub mod local_fit;
pub mod scheduler;
pub mod sim;
pub mod users;
