//! NetworkPolicy (networking.k8s.io/v1) as a pure model. `Cluster` indexes the pods, namespaces and policies of
//! a snapshot; `decide` answers whether a connection is allowed and which policy rule (or isolation) decided,
//! for each direction. The nftables rules and `weft trace` are both derived from this one model, so what the
//! explanation says is what the dataplane does.

pub mod apply;
pub mod check;
pub mod cluster;
pub mod decide;
pub mod enforced;
pub mod plan;

pub use apply::{Enforcer, Report};
pub use cluster::{Cluster, PodInfo};
pub use decide::{Decision, Direction, Endpoint, Protocol, RuleRef, Side, decide};
