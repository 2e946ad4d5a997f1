//! The deterministic simulation (issue 11): many real nodes run from one seed, with faults,
//! and are judged when the faults stop.
//! - `world`: one seeded run: nodes on memory stores under a paused runtime, the script of
//!   writes and faults, settling, and the checks;
//! - `net`: the simulated network (the engine's link traits over in-process calls, with
//!   delays, lost pages, partitions and crashes) and the run's trace;
//! - `many`: sweeps of seeds over several threads;
//! - `oracle`: what a run promised (every acknowledged write with what the store assigned it
//!   and its causal context, each node's clock floor, the writes a restore lost by design);
//! - `check`: the live stores held to it: convergence, no acknowledged write lost, the right
//!   winner, no resurrection, knowledge only of records held, clocks never going back;
//! - `violation`: what a broken invariant reports.

pub mod check;
pub mod many;
pub mod net;
pub mod oracle;
pub mod violation;
pub mod world;

pub use many::{Sweep, sweep};
pub use world::{Failure, Outcome, SimConfig, run};

#[cfg(test)]
mod harness;
#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod tests;
