//! ACME (RFC 8555): the stub point the ACME client (crate weft-acme) plugs into: account registration in `setup`,
//! and an Order with its Challenges per request in `sign`. Until then an ACME issuer is not ready, so requests for
//! it stay Pending.

use super::{Outcome, Readiness, Resolved};
use crate::api::{ACMEIssuer, CertificateRequest};
use kube::Client;

pub async fn setup(_client: &Client, _issuer: &Resolved, _acme: &ACMEIssuer) -> Readiness {
    Readiness {
        ready: false,
        reason: "ErrRegisterACMEAccount",
        message: "Failed to register ACME account: the ACME issuer is not available in this build".into(),
    }
}

pub async fn sign(
    _client: &Client,
    _issuer: &Resolved,
    _acme: &ACMEIssuer,
    _request: &CertificateRequest,
) -> Result<Outcome, kube::Error> {
    Ok(Outcome::Pending(
        "the ACME issuer is not available in this build".into(),
    ))
}
