//! Proof that nothing is lost (issue 9): the tools the fault, kill-loop, fuzz and soak tiers
//! share.
//!
//! - [`proxy`]: a fault-injecting HTTP/1.1 proxy (connections dropped mid-body, reset before the
//!   answer, answers lost after the server recorded the range, latency, 502/503), seeded.
//! - [`server`]: the real `droppr-server` binary as a child process that can be SIGKILLed and
//!   restarted on the same data directory and port.
//! - [`fuzz`]: an HTTP fuzzer that checks no 5xx but 507, no range recorded that was not fully
//!   received, and nothing written outside the data directory.
//! - [`wire`]: the bits of HTTP/1.1 the proxy and the fuzzer speak by hand.
//!
//! Everything talks to loopback only, on ports the OS picks.

pub mod fuzz;
pub mod proxy;
pub mod server;
pub mod wire;

/// The share of `part` in `whole`, for printed ratios.
#[allow(clippy::cast_precision_loss)]
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
