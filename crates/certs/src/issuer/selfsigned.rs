//! SelfSigned: each certificate is signed by its own key, which the request's `cert-manager.io/private-key-secret-name`
//! annotation names (a Secret in the request's namespace).

use super::{Outcome, Readiness};
use crate::api::CertificateRequest;
use crate::pki::{key, x509};
use crate::secrets;
use kube::{Client, ResourceExt};

pub fn setup() -> Readiness {
    Readiness {
        ready: true,
        reason: "IsReady",
        message: String::new(),
        account: None,
    }
}

pub async fn sign(client: &Client, request: &CertificateRequest) -> Result<Outcome, kube::Error> {
    let Some(secret_name) = request.annotations().get(crate::annotations::PRIVATE_KEY_SECRET_NAME) else {
        return Ok(Outcome::Failed(format!(
            "Annotation {:?} missing or reference empty",
            crate::annotations::PRIVATE_KEY_SECRET_NAME
        )));
    };
    let namespace = request.namespace().unwrap_or_default();
    let Some(secret) = secrets::get(client, &namespace, secret_name).await? else {
        return Ok(Outcome::Pending {
            reason: "MissingSecret",
            message: format!("Referenced secret {namespace}/{secret_name} not found"),
        });
    };
    let Some(key) = secrets::text(&secret, "tls.key").and_then(|t| key::from_pem(t).ok()) else {
        return Ok(Outcome::Failed(format!(
            "Secret {namespace}/{secret_name} holds no valid tls.key"
        )));
    };
    let (duration, is_ca) = match super::template(request) {
        Ok(t) => t,
        Err(e) => return Ok(Outcome::Failed(e)),
    };
    let csr = match super::csr(request) {
        Ok(csr) => csr,
        Err(e) => return Ok(Outcome::Failed(e)),
    };
    let template = x509::Template {
        duration,
        is_ca,
        usages: &request.spec.usages,
    };
    Ok(match x509::sign(&csr, &template, x509::Signer::SelfSigned(&key)) {
        Ok(certificate) => Outcome::Issued {
            ca: Some(certificate.clone()),
            certificate,
        },
        Err(e) => Outcome::Failed(format!("Error signing certificate: {e}")),
    })
}
