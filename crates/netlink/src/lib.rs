//! weft's kernel shell: the only crate that talks to the kernel about network namespaces, links,
//! addresses, routes, sysctls and nftables.

pub mod addr;
pub mod error;
pub mod link;
pub mod neigh;
pub mod netns;
pub mod nft;
pub mod nftables;
pub mod route;
pub mod socket;
pub mod sysctl;

pub use error::{Error, Result};
pub use link::Link;
pub use netns::Netns;
pub use route::Route;
pub use socket::Handle;
