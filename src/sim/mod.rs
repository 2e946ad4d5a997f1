//! The deterministic simulation's judge (issue 11): `oracle` keeps what a run promised (every
//! acknowledged write with what the store assigned it and its causal context, each node's
//! clock floor, the writes a restore lost by design) and `check` holds the live nodes' stores
//! to it when faults stop: convergence, no acknowledged write lost, the right winner, no
//! resurrection, knowledge only of records held, clocks never going back, reporting a
//! `violation::Violation`. The runtime that drives nodes, network and faults from a seed comes
//! later and calls `Oracle::acknowledged`, `Oracle::observe_clock`, `Oracle::restarted`,
//! `Oracle::restored` and `check::check_all`.

pub mod check;
pub mod oracle;
pub mod violation;

#[cfg(test)]
mod harness;
#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod tests;
