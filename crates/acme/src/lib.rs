//! ACME (RFC 8555) for `weft certs`' ACME issuer, through the maintained instant-acme client (JWS, nonces,
//! account and order objects are its work): an account registered or found again from a PEM key the caller
//! stores, external account binding, trust in a private server's CA (`caBundle`) or none (`skipTLSVerify`), and
//! orders for a CSR's names answered by HTTP-01 through the caller's [`Http01Solver`]. Errors say what cert-manager
//! would report ([`Error::reason`]). [`pebble`] runs Let's Encrypt's test server for tests and labs.

mod account;
mod csr;
mod error;
mod order;
pub mod pebble;
mod transport;

pub use account::{Account, AccountKey, Binding, Registration, Server, load, register};
pub use csr::identifiers;
pub use error::{Error, Result};
pub use instant_acme::Identifier;
pub use order::{Backoff, Http01Solver, Issued, issue};
pub use transport::{REQUEST_TIMEOUT, Trust};
