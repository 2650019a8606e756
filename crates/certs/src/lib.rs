//! weft's certificate controller (`weft certs`), in the role of cert-manager: its API unchanged (`api`), the
//! issuers that sign (`issuer`: SelfSigned, CA and ACME), the keys, CSRs and certificates (`pki`),
//! and the controllers that keep Issuers Ready, Certificates issued and renewed, and Ingresses' Certificates
//! (`controller`).

pub mod acme_solver;
pub mod annotations;
pub mod api;
pub mod controller;
pub mod duration;
pub mod issuer;
pub mod pki;
mod secrets;

/// cert-manager's default certificate lifetime: 90 days.
pub const DEFAULT_DURATION: std::time::Duration = std::time::Duration::from_secs(2160 * 3600);
