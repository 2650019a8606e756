//! ACME (RFC 8555) through weft-acme: the account registered in `setup` (its key kept in `privateKeySecretRef`),
//! and per CertificateRequest an Order object whose ACME order a background task works through, presenting each
//! HTTP-01 key authorization as a Challenge object served by a solver pod behind an Ingress (`http01`), as
//! cert-manager does. The request stays Pending until the Order is valid (Issued) or invalid/errored (Failed).

mod account;
mod edit;
mod http01;
mod order;
mod select;

use super::{Outcome, Readiness, Resolved};
use crate::api::{ACMEIssuer, ACMEIssuerStatus, CertificateRequest};
use crate::controller::Options;
use kube::Client;

/// Registers the account (or finds it again from its stored key): Ready with cert-manager's reasons, and the
/// account's URL and email for `status.acme`.
pub async fn setup(client: &Client, issuer: &Resolved, acme: &ACMEIssuer) -> Readiness {
    let failed = |reason, message| Readiness {
        ready: false,
        reason,
        message,
        account: None,
    };
    match account::ensure(client, issuer, acme).await {
        Ok(account) => Readiness {
            ready: true,
            reason: "ACMEAccountRegistered",
            message: "The ACME account was registered with the ACME server".into(),
            account: Some(ACMEIssuerStatus {
                uri: Some(account.uri),
                last_registered_email: acme.email.clone(),
                last_private_key_hash: None,
            }),
        },
        Err(account::Failure::Acme(e)) => failed(e.issuer_reason(), format!("Failed to register ACME account: {e}")),
        Err(account::Failure::Config(message)) => failed("InvalidConfig", message),
        Err(account::Failure::Kube(e)) => failed(
            "ErrRegisterACMEAccount",
            format!("Failed to register ACME account: {e}"),
        ),
    }
}

/// The request's Order: created when missing, worked on in the background, and its outcome once it has one.
pub async fn sign(
    client: &Client,
    options: &Options,
    issuer: &Resolved,
    acme: &ACMEIssuer,
    request: &CertificateRequest,
) -> Result<Outcome, kube::Error> {
    order::sign(client, options, issuer, acme, request).await
}
