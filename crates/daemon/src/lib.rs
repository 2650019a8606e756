//! What operating weft's long-running node components (the agent, DNS) takes, shared by both: `/healthz`,
//! `/readyz` and Prometheus `/metrics` over HTTP (`http`, `metrics`), whether the main loop is stuck
//! (`liveness`), logging (`log`) and termination signals (`signal`).

pub mod http;
pub mod liveness;
pub mod log;
pub mod metrics;
pub mod signal;

pub use http::Probes;
pub use liveness::Liveness;
pub use metrics::{Collect, Exposition, Histogram, Registry};
