//! The service proxy, kube-proxy's job on nftables. `plan` turns a snapshot's Services and EndpointSlices into a
//! `Ruleset` (pure: unit- and snapshot-tested; `Planner` does the same re-planning only the Services that
//! changed); `Ruleset::diff` turns two rulesets into one nft transaction that
//! rewrites only what changed; `Proxier` applies it and clears conntrack entries that would outlive their
//! endpoints. Per packet, a Service is found by one verdict-map lookup on `address . protocol . port`, so the
//! cost does not grow with the number of Services.

pub mod apply;
pub mod endpoints;
pub mod plan;
pub mod ruleset;

pub use apply::Proxier;

pub use plan::{Context, Planner, SERVICES_PER_PART, plan};
pub use ruleset::Ruleset;
