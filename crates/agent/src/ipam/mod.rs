//! Pod CIDRs: each node's block of pod addresses. Where the cluster allocates them (kube-controller-manager with
//! `--allocate-node-cidrs`, as kubeadm's `--pod-network-cidr`, k3s and kind set up) the agent uses
//! `Node.spec.podCIDR`; otherwise it claims a block of the cluster CIDR itself as a `PodCIDRBlock` custom resource
//! named after the block, so that of two agents racing for one block the second gets `409 AlreadyExists` and takes
//! the next (Calico's block affinities work the same way). A block names its Node as owner: the garbage collector
//! frees the blocks of deleted Nodes.
//!
//! `block.rs` is the custom resource (its CRD is generated from the type), `plan.rs` the pure rules (which source,
//! which blocks are free, every node's CIDR in a snapshot), `claim.rs` the requests.

pub mod block;
pub mod claim;
pub mod plan;

pub use block::{PodCIDRBlock, PodCIDRBlockSpec};
pub use claim::{ClaimError, claim};
pub use plan::{Allocation, CidrSource, Pool, pod_cidrs};
