//! weft's node agent. Each part is a pure planner (objects in, desired dataplane out, unit-tested without
//! root) and a thin applier that diffs the desired state against what weft owns in the kernel.

pub mod drift;
pub mod error;
pub mod flows;
pub mod health;
pub mod ipam;
pub mod ippool;
pub mod kube_proxy;
pub mod metrics;
pub mod node;
pub mod node_event;
pub mod overlay;
pub mod projection;

pub use error::{Error, Result};
