//! weft's kernel shell: the only crate that talks to the kernel about network namespaces, links,
//! addresses, routes, sysctls and nftables.

pub mod error;
pub mod nft;
pub mod sysctl;

pub use error::{Error, Result};
