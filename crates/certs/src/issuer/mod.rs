//! The issuers: whether one is ready (`setup`), and signing a CertificateRequest with it (`sign`). Every issuer
//! type is dispatched here and only here: SelfSigned (`selfsigned`), CA (`ca`) and ACME (`acme`).

mod acme;
mod ca;
mod selfsigned;

use crate::api::{CertificateRequest, ClusterIssuer, Condition, Issuer as IssuerKind, IssuerConfig, IssuerRef};
use kube::{Api, Client};

/// An Issuer or ClusterIssuer, found: its spec, where its Secrets live, and its Ready condition.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// `Issuer` or `ClusterIssuer`.
    pub kind: &'static str,
    pub name: String,
    pub config: IssuerConfig,
    /// The namespace of the Secrets it names (its own, or the cluster resource namespace).
    pub secrets_namespace: String,
    pub conditions: Vec<Condition>,
}

impl Resolved {
    pub fn ready(&self) -> bool {
        crate::api::is_true(&self.conditions, "Ready")
    }
}

/// Finds the issuer `issuer_ref` of an object in `namespace` (None: no such issuer, or one of another group,
/// which weft leaves to that group's controller).
pub async fn resolve(
    client: &Client,
    namespace: &str,
    issuer_ref: &IssuerRef,
    cluster_resource_namespace: &str,
) -> Result<Option<Resolved>, kube::Error> {
    if issuer_ref.group() != crate::api::GROUP {
        return Ok(None);
    }
    Ok(match issuer_ref.kind() {
        "ClusterIssuer" => {
            let api: Api<ClusterIssuer> = Api::all(client.clone());
            api.get_opt(&issuer_ref.name).await?.map(|i| Resolved {
                kind: "ClusterIssuer",
                name: issuer_ref.name.clone(),
                config: i.spec.config,
                secrets_namespace: cluster_resource_namespace.to_string(),
                conditions: i.status.map(|s| s.conditions).unwrap_or_default(),
            })
        }
        "Issuer" => {
            let api: Api<IssuerKind> = Api::namespaced(client.clone(), namespace);
            api.get_opt(&issuer_ref.name).await?.map(|i| Resolved {
                kind: "Issuer",
                name: issuer_ref.name.clone(),
                config: i.spec.config,
                secrets_namespace: namespace.to_string(),
                conditions: i.status.map(|s| s.conditions).unwrap_or_default(),
            })
        }
        _ => None,
    })
}

/// An issuer's Ready condition: reason and message, as cert-manager words them.
#[derive(Clone, Debug, PartialEq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
    /// An ACME issuer's registered account (`status.acme`), once it has one.
    pub account: Option<crate::api::ACMEIssuerStatus>,
}

/// Whether the issuer can sign: its Ready condition.
pub async fn setup(client: &Client, issuer: &Resolved) -> Readiness {
    let config = &issuer.config;
    match (&config.self_signed, &config.ca, &config.acme) {
        (Some(_), None, None) => selfsigned::setup(),
        (None, Some(ca), None) => ca::setup(client, &issuer.secrets_namespace, ca).await,
        (None, None, Some(acme)) => acme::setup(client, issuer, acme).await,
        _ => Readiness {
            ready: false,
            reason: "ErrInitIssuer",
            message: "Error initializing issuer: exactly one of selfSigned, ca or acme must be set".into(),
            account: None,
        },
    }
}

/// What signing a request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The certificate (PEM, leaf first, then the chain) and the CA that signed it, when known.
    Issued { certificate: String, ca: Option<String> },
    /// Not yet (an ACME order in progress, a Secret missing): look again later. `reason` is the request's Event
    /// reason, as cert-manager's issuers record it.
    Pending { reason: &'static str, message: String },
    /// Never: the request is marked Failed and the Certificate retries with a new one after a back-off.
    Failed(String),
}

/// Signs `request` with `issuer`; an Err is a transient failure (the API unreachable), retried with back-off.
pub async fn sign(
    client: &Client,
    options: &crate::controller::Options,
    issuer: &Resolved,
    request: &CertificateRequest,
) -> Result<Outcome, kube::Error> {
    let config = &issuer.config;
    match (&config.self_signed, &config.ca, &config.acme) {
        (Some(_), None, None) => selfsigned::sign(client, request).await,
        (None, Some(ca), None) => ca::sign(client, &issuer.secrets_namespace, ca, request).await,
        (None, None, Some(acme)) => acme::sign(client, options, issuer, acme, request).await,
        _ => Ok(Outcome::Failed("the issuer has no single type".into())),
    }
}

/// The PEM CSR of a request (base64 of the PEM in the object).
pub fn csr(request: &CertificateRequest) -> Result<String, String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(request.spec.request.trim())
        .map_err(|e| format!("spec.request is not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "spec.request is not a PEM CSR".to_string())
}

/// The validity and usages a request asks for.
pub fn template(request: &CertificateRequest) -> Result<(std::time::Duration, bool), String> {
    let duration = match request.spec.duration.as_deref() {
        None | Some("") => crate::DEFAULT_DURATION,
        Some(text) => {
            crate::duration::parse(text).ok_or_else(|| format!("spec.duration {text:?} is not a duration"))?
        }
    };
    Ok((duration, request.spec.is_ca.unwrap_or(false)))
}
