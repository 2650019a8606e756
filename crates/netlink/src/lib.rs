//! weft's kernel shell: the only crate that talks to the kernel about network namespaces, links,
//! addresses, routes, sysctls and nftables.

pub mod addr;
pub mod conntrack;
pub mod error;
pub mod fdb;
pub mod flow_events;
pub mod link;
pub mod monitor;
pub mod neigh;
pub mod netns;
pub mod nft;
pub mod nft_rules;
pub mod nftables;
pub mod route;
pub mod socket;
pub mod sysctl;
pub mod vxlan;

pub use error::{Error, Result};
pub use fdb::{FdbEntry, Neighbour};
pub use link::Link;
pub use netns::Netns;
pub use route::Route;
pub use socket::Handle;
pub use vxlan::{Vxlan, VxlanConfig};
