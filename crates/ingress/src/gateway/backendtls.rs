//! BackendTLSPolicy: TLS from the proxy to a Service's backends, verified against the CA certificates of the
//! policy's ConfigMaps (`ca.crt`), or the system's (`wellKnownCACertificates: System`), for `hostname`, which is
//! also the SNI, or for one of its `subjectAltNames` instead (DNS names and URIs, `san`). The policy's client is
//! made by the proxy-ssl clients' registry (`proxyssl`), as an Ingress's `proxy-ssl-verify` one, and kept across
//! tables while the policy and its certificates stay the same. A policy that cannot be followed (a reference
//! that is not a ConfigMap, a ConfigMap without PEM `ca.crt`, an unknown `wellKnownCACertificates`, no system
//! roots) leaves the Service's share of a rule answering 500, as an invalid backendRef.

use super::conditions::{Cond, cond};
use crate::annotations::BackendProtocol;
use crate::backend::UpstreamClient;
use crate::proxyssl::{self, Material, ProxySsl};
use crate::san::AltName;
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::BTreeSet;
use weft_gateway::api::{BackendTLSPolicy, ParentReference};
use weft_model::Snapshot;

/// The BackendTLSPolicies of a snapshot.
pub struct Policies(Vec<BackendTLSPolicy>);

impl Policies {
    pub fn new(snapshot: &Snapshot) -> Policies {
        let mut all: Vec<BackendTLSPolicy> = snapshot
            .of_kind("BackendTLSPolicy")
            .filter_map(|o| serde_json::from_value(o.to_value()).ok())
            .collect();
        // The oldest policy of a Service port wins, as the spec's conflict rule asks.
        all.sort_by_key(|p| {
            let ts = p.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string());
            (ts, p.metadata.namespace.clone(), p.metadata.name.clone())
        });
        Policies(all)
    }

    /// The policy of port `port` of Service `namespace/name` in `snapshot`: one targeting the Service, with
    /// `sectionName` the port's name or none.
    pub fn of(&self, snapshot: &Snapshot, namespace: &str, name: &str, port: i32) -> Option<&BackendTLSPolicy> {
        let port_name = super::compile::service_port(snapshot, namespace, name, port).and_then(|p| p.name);
        self.0.iter().find(|p| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && p.spec.target_refs.iter().any(|t| {
                    t.group.is_empty()
                        && t.kind == "Service"
                        && t.name == name
                        && t.section_name.as_ref().is_none_or(|s| Some(s) == port_name.as_ref())
                })
        })
    }
}

/// Why a policy cannot be followed: the reason of its ResolvedRefs condition and a message.
pub type Problem = (&'static str, String);

/// The CA certificates a policy validates with.
pub fn material(policy: &BackendTLSPolicy, snapshot: &Snapshot) -> Result<Material, Problem> {
    let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
    let validation = &policy.spec.validation;
    match validation.well_known_ca_certificates.as_deref() {
        Some("System") if validation.ca_certificate_refs.is_empty() => {
            return Material::system().map_err(|e| ("InvalidCACertificateRef", e.to_string()));
        }
        Some("System") => {
            let message = "caCertificateRefs and wellKnownCACertificates are exclusive";
            return Err(("Invalid", message.into()));
        }
        Some(other) => return Err(("Invalid", format!("wellKnownCACertificates {other:?} is not known"))),
        None => {}
    }
    let mut pem = Vec::new();
    for r in &validation.ca_certificate_refs {
        if !r.group.is_empty() || r.kind != "ConfigMap" {
            return Err(("InvalidKind", format!("{} {} is not a ConfigMap", r.kind, r.name)));
        }
        let key = weft_model::Key::new("ConfigMap", Some(namespace), &r.name);
        let map = snapshot
            .get(&key)
            .and_then(|o| serde_json::from_value::<ConfigMap>(o.to_value()).ok());
        let ca = map.and_then(|m| m.data?.remove("ca.crt"));
        let Some(ca) = ca else {
            return Err((
                "InvalidCACertificateRef",
                format!("ConfigMap {namespace}/{} has no ca.crt", r.name),
            ));
        };
        pem.extend_from_slice(ca.as_bytes());
        pem.push(b'\n');
    }
    let material = Material::from_pem(&|key| (key == "ca.crt").then_some(pem.as_slice()))
        .map_err(|e| ("InvalidCACertificateRef", e.to_string()))?;
    if !material.has_roots() {
        return Err(("InvalidCACertificateRef", "no CA certificate".into()));
    }
    Ok(material)
}

/// The client of a policy for backends of `protocol`: TLS (HTTPS, or h2 for h2c and gRPC backends) verified for
/// the policy's hostname; `used` collects the registry's keys the table keeps.
pub fn client(
    policy: &BackendTLSPolicy,
    material: &Material,
    protocol: BackendProtocol,
    clients: &proxyssl::Clients,
    used: &mut BTreeSet<proxyssl::Key>,
) -> Result<(UpstreamClient, BackendProtocol), Problem> {
    let protocol = match protocol {
        BackendProtocol::Grpc | BackendProtocol::Grpcs => BackendProtocol::Grpcs,
        BackendProtocol::Http | BackendProtocol::Https => BackendProtocol::Https,
    };
    let alt_names = policy.spec.validation.subject_alt_names.iter().filter_map(|san| {
        match (san.type_.as_str(), &san.hostname, &san.uri) {
            ("Hostname", Some(hostname), _) => Some(AltName::Dns(hostname.clone())),
            ("URI", _, Some(uri)) => Some(AltName::Uri(uri.clone())),
            _ => None,
        }
    });
    let ssl = ProxySsl {
        secret: None,
        verify: true,
        name: Some(policy.spec.validation.hostname.clone()),
        server_name: true,
        alt_names: alt_names.collect(),
    };
    let id = format!(
        "backendtlspolicy/{}/{}",
        policy.metadata.namespace.as_deref().unwrap_or_default(),
        policy.metadata.name.as_deref().unwrap_or_default()
    );
    let key = (id, ssl, protocol, None, material.digest.clone());
    used.insert(key.clone());
    let client = clients
        .of(key, material, crate::proxy::CONNECT_TIMEOUT)
        .map_err(|e| ("InvalidCACertificateRef", e.to_string()))?;
    Ok((client, protocol))
}

/// A policy's status entry for one Gateway whose routes send to its Service: Accepted, and ResolvedRefs with
/// the policy's problem (`Invalid`: a value the spec says makes the policy not accepted, its references
/// resolved).
pub fn conditions(problem: Option<&Problem>) -> Vec<Cond> {
    match problem {
        None => vec![
            cond("Accepted", true, "Accepted", ""),
            cond("ResolvedRefs", true, "ResolvedRefs", ""),
        ],
        Some(("Invalid", message)) => vec![
            cond("Accepted", false, "Invalid", message.clone()),
            cond("ResolvedRefs", true, "ResolvedRefs", ""),
        ],
        Some((reason, message)) => vec![
            cond("Accepted", false, "NoValidCACertificate", message.clone()),
            cond("ResolvedRefs", false, reason, message.clone()),
        ],
    }
}

/// The ancestor a policy's status names: a Gateway.
pub fn ancestor(namespace: &str, name: &str) -> ParentReference {
    ParentReference {
        group: Some(weft_gateway::api::GROUP.into()),
        kind: Some("Gateway".into()),
        namespace: Some(namespace.into()),
        name: name.into(),
        ..ParentReference::default()
    }
}
