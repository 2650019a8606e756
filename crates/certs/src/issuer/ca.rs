//! CA: certificates signed by the CA in a Secret (tls.crt, its chain, and tls.key); the issued tls.crt is the leaf
//! followed by that chain, and ca.crt the chain's last certificate, as cert-manager writes them.

use super::{Outcome, Readiness};
use crate::api::{CAIssuer, CertificateRequest};
use crate::pki::{key, x509};
use crate::secrets;
use kube::Client;

/// The CA's chain (PEM) and key, or why there is none: (reason, message).
async fn key_pair(
    client: &Client,
    namespace: &str,
    ca: &CAIssuer,
) -> Result<Result<(String, rcgen::KeyPair), (&'static str, String)>, kube::Error> {
    let name = &ca.secret_name;
    let Some(secret) = secrets::get(client, namespace, name).await? else {
        return Ok(Err((
            "ErrGetKeyPair",
            format!("Error getting keypair for CA issuer: secrets \"{name}\" not found"),
        )));
    };
    let invalid = |what: String| {
        Ok(Err((
            "ErrInvalidKeyPair",
            format!("Error getting keypair for CA issuer: {what}"),
        )))
    };
    let (Some(chain), Some(key_pem)) = (secrets::text(&secret, "tls.crt"), secrets::text(&secret, "tls.key")) else {
        return invalid(format!("secret \"{name}\" has no tls.crt or tls.key"));
    };
    let info = match x509::inspect(chain) {
        Ok(info) => info,
        Err(e) => return invalid(e.to_string()),
    };
    let key = match key::from_pem(key_pem) {
        Ok(key) => key,
        Err(e) => return invalid(e.to_string()),
    };
    if info.public_key != key.public_key_raw() {
        return invalid("the private key does not match the certificate".into());
    }
    if !info.is_ca {
        return invalid("the certificate is not a CA (basicConstraints CA:TRUE)".into());
    }
    Ok(Ok((chain.to_string(), key)))
}

pub async fn setup(client: &Client, namespace: &str, ca: &CAIssuer) -> Readiness {
    match key_pair(client, namespace, ca).await {
        Ok(Ok(_)) => Readiness {
            ready: true,
            reason: "KeyPairVerified",
            message: "Signing CA verified".into(),
            account: None,
        },
        Ok(Err((reason, message))) => Readiness {
            ready: false,
            reason,
            message,
            account: None,
        },
        Err(e) => Readiness {
            ready: false,
            reason: "ErrGetKeyPair",
            message: format!("Error getting keypair for CA issuer: {e}"),
            account: None,
        },
    }
}

pub async fn sign(
    client: &Client,
    namespace: &str,
    ca: &CAIssuer,
    request: &CertificateRequest,
) -> Result<Outcome, kube::Error> {
    let (chain, ca_key) = match key_pair(client, namespace, ca).await? {
        Ok(pair) => pair,
        // The issuer itself is not ready: the request waits for it.
        Err((why, message)) => {
            let reason = if why == "ErrGetKeyPair" {
                "SecretMissing"
            } else {
                "SecretInvalidData"
            };
            return Ok(Outcome::Pending { reason, message });
        }
    };
    let (duration, is_ca) = match super::template(request) {
        Ok(t) => t,
        Err(e) => return Ok(Outcome::Failed(e)),
    };
    let csr = match super::csr(request) {
        Ok(csr) => csr,
        Err(e) => return Ok(Outcome::Failed(e)),
    };
    let blocks = match x509::chain(&chain) {
        Ok(blocks) if !blocks.is_empty() => blocks,
        _ => {
            return Ok(Outcome::Pending {
                reason: "SecretInvalidData",
                message: "the CA's tls.crt holds no certificate".into(),
            });
        }
    };
    let template = x509::Template {
        duration,
        is_ca,
        usages: &request.spec.usages,
    };
    let signer = x509::Signer::Ca {
        certificate: &blocks[0],
        key: &ca_key,
    };
    Ok(match x509::sign(&csr, &template, signer) {
        Ok(leaf) => Outcome::Issued {
            certificate: format!("{leaf}{}", blocks.concat()),
            ca: blocks.last().cloned(),
        },
        Err(e) => Outcome::Failed(format!("Error signing certificate: {e}")),
    })
}
