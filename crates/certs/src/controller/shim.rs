//! ingress-shim: an Ingress annotated with an issuer (`cert-manager.io/issuer`, `cert-manager.io/cluster-issuer`,
//! with `issuer-kind`/`issuer-group`, or `kubernetes.io/tls-acme` with the default issuer) gets one Certificate per
//! `tls[].secretName`, named after that Secret, for that entry's hosts, owned by the Ingress; Certificates whose
//! Secret left the Ingress are deleted.

use super::{Context, Error, events, retry};
use crate::annotations;
use crate::api::{Certificate, CertificatePrivateKey, CertificateSpec, IssuerRef};
use futures::Stream;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_model::k8s_openapi::api::networking::v1::Ingress;

pub fn controller(
    ctx: Arc<Context>,
) -> impl Stream<Item = Result<(ObjectRef<Ingress>, Action), impl std::error::Error>> {
    let client = ctx.client.clone();
    Controller::new(Api::<Ingress>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Certificate>::all(client), watcher::Config::default())
        .run(
            reconcile,
            |ingress: Arc<Ingress>, error: &Error, ctx: Arc<Context>| {
                let key = format!(
                    "Ingress/{}/{}",
                    ingress.namespace().unwrap_or_default(),
                    ingress.name_any()
                );
                retry(&ctx, key, error)
            },
            ctx,
        )
}

/// The issuer an Ingress's annotations name (None: not annotated for cert-manager).
fn issuer(annotations: &BTreeMap<String, String>, default: Option<&IssuerRef>) -> Result<Option<IssuerRef>, String> {
    let get = |key: &str| annotations.get(key).filter(|v| !v.is_empty());
    let (name, kind) = match (
        get(annotations::INGRESS_ISSUER),
        get(annotations::INGRESS_CLUSTER_ISSUER),
    ) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "both {} and {} annotations are set",
                annotations::INGRESS_ISSUER,
                annotations::INGRESS_CLUSTER_ISSUER
            ));
        }
        (Some(name), None) => (name.clone(), "Issuer".to_string()),
        (None, Some(name)) => (name.clone(), "ClusterIssuer".to_string()),
        (None, None) => match (get(annotations::TLS_ACME).map(String::as_str), default) {
            (Some("true"), Some(default)) => return Ok(Some(default.clone())),
            _ => return Ok(None),
        },
    };
    Ok(Some(IssuerRef {
        name,
        kind: Some(get(annotations::INGRESS_ISSUER_KIND).cloned().unwrap_or(kind)),
        group: Some(
            get(annotations::INGRESS_ISSUER_GROUP)
                .cloned()
                .unwrap_or_else(|| crate::api::GROUP.into()),
        ),
    }))
}

/// The Certificates an Ingress asks for (an Err: its annotations or tls section are wrong).
pub fn desired(ingress: &Ingress, default_issuer: Option<&IssuerRef>) -> Result<Vec<Certificate>, String> {
    let annotations = ingress.annotations();
    let Some(issuer_ref) = issuer(annotations, default_issuer)? else {
        return Ok(Vec::new());
    };
    let get = |key: &str| {
        annotations
            .get(&format!("cert-manager.io/{key}"))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let private_key = CertificatePrivateKey {
        algorithm: get("private-key-algorithm")
            .map(|a| serde_json::from_value(a.into()))
            .transpose()
            .map_err(|e| format!("cert-manager.io/private-key-algorithm: {e}"))?,
        encoding: get("private-key-encoding")
            .map(|a| serde_json::from_value(a.into()))
            .transpose()
            .map_err(|e| format!("cert-manager.io/private-key-encoding: {e}"))?,
        rotation_policy: get("private-key-rotation-policy")
            .map(|a| serde_json::from_value(a.into()))
            .transpose()
            .map_err(|e| format!("cert-manager.io/private-key-rotation-policy: {e}"))?,
        size: get("private-key-size")
            .map(|s| s.parse())
            .transpose()
            .map_err(|e| format!("cert-manager.io/private-key-size: {e}"))?,
    };
    let list = |key: &str| -> Vec<String> {
        get(key)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let solver_annotations = solver_overrides(annotations, &ingress.name_any());
    let mut seen = std::collections::BTreeSet::new();
    let mut certificates = Vec::new();
    for tls in ingress.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
        let Some(secret_name) = tls.secret_name.clone().filter(|s| !s.is_empty()) else {
            return Err("TLS entry has no secretName".into());
        };
        if !seen.insert(secret_name.clone()) {
            return Err(format!("duplicate TLS entry for secretName {secret_name:?}"));
        }
        let hosts = tls.hosts.clone().unwrap_or_default();
        let (ips, dns): (Vec<String>, Vec<String>) =
            hosts.into_iter().partition(|h| h.parse::<std::net::IpAddr>().is_ok());
        let mut dns_names = list("alt-names");
        dns_names.extend(dns);
        let mut ip_addresses = list("ip-sans");
        ip_addresses.extend(ips);
        let spec = CertificateSpec {
            common_name: get("common-name"),
            duration: get("duration"),
            renew_before: get("renew-before"),
            renew_before_percentage: get("renew-before-percentage").and_then(|p| p.parse().ok()),
            dns_names,
            ip_addresses,
            uris: list("uri-sans"),
            email_addresses: list("email-sans"),
            secret_name: secret_name.clone(),
            issuer_ref: issuer_ref.clone(),
            usages: list("usages"),
            private_key: (private_key != CertificatePrivateKey::default()).then(|| private_key.clone()),
            revision_history_limit: get("revision-history-limit").and_then(|l| l.parse().ok()),
            ..Default::default()
        };
        certificates.push(Certificate {
            metadata: ObjectMeta {
                name: Some(secret_name),
                namespace: ingress.namespace(),
                labels: ingress.metadata.labels.clone(),
                annotations: (!solver_annotations.is_empty()).then(|| solver_annotations.clone()),
                owner_references: ingress.controller_owner_ref(&()).map(|o| vec![o]),
                ..Default::default()
            },
            spec,
            status: None,
        });
    }
    Ok(certificates)
}

async fn reconcile(ingress: Arc<Ingress>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = ingress.namespace().unwrap_or_default();
    let api = Api::<Certificate>::namespaced(ctx.client.clone(), &namespace);
    let wanted = match desired(&ingress, ctx.options.default_issuer.as_ref()) {
        Ok(wanted) => wanted,
        Err(message) => {
            events::publish(&ctx.client, &*ingress, events::WARNING, "BadConfig", &message).await;
            return Ok(Action::await_change());
        }
    };
    for certificate in &wanted {
        let name = certificate.name_any();
        match api.get_opt(&name).await? {
            None => {
                api.create(&PostParams::default(), certificate).await?;
                let message = format!("Successfully created Certificate \"{name}\"");
                events::publish(&ctx.client, &*ingress, events::NORMAL, "CreateCertificate", &message).await;
            }
            Some(existing) => {
                let owned = existing
                    .owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == ingress.uid().as_ref());
                if !owned {
                    let message = format!("Certificate \"{name}\" exists and is not owned by this Ingress");
                    events::publish(&ctx.client, &*ingress, events::WARNING, "BadConfig", &message).await;
                    continue;
                }
                if existing.spec != certificate.spec || existing.metadata.labels != certificate.metadata.labels {
                    let mut updated = existing.clone();
                    updated.spec = certificate.spec.clone();
                    updated.metadata.labels = certificate.metadata.labels.clone();
                    api.replace(&name, &PostParams::default(), &updated).await?;
                    let message = format!("Successfully updated Certificate \"{name}\"");
                    events::publish(&ctx.client, &*ingress, events::NORMAL, "UpdateCertificate", &message).await;
                }
            }
        }
    }
    // The Certificates this Ingress made for Secrets it no longer lists.
    for stale in api.list(&ListParams::default()).await? {
        let ours = stale
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == ingress.uid().as_ref());
        if ours && !wanted.iter().any(|w| w.name_any() == stale.name_any()) {
            api.delete(&stale.name_any(), &DeleteParams::default()).await?;
            let message = format!(
                "Deleted Certificate \"{}\": its Secret left the Ingress",
                stale.name_any()
            );
            events::publish(&ctx.client, &*ingress, events::NORMAL, "DeleteCertificate", &message).await;
        }
    }
    Ok(Action::await_change())
}

/// The ACME solver's overrides ingress-shim puts on a Certificate, from the Ingress's annotations as cert-manager
/// reads them: `acme.cert-manager.io/http01-edit-in-place: "true"` makes the solver add its path to this Ingress,
/// `http01-ingress-class` and `http01-ingress-ingressclassname` set its own Ingress's class.
fn solver_overrides(annotations: &BTreeMap<String, String>, ingress: &str) -> BTreeMap<String, String> {
    let mut overrides = BTreeMap::new();
    if annotations.get(annotations::HTTP01_EDIT_IN_PLACE).map(String::as_str) == Some("true") {
        overrides.insert(
            annotations::HTTP01_OVERRIDE_INGRESS_NAME.to_string(),
            ingress.to_string(),
        );
    }
    for (from, to) in [
        (
            annotations::HTTP01_INGRESS_CLASS,
            annotations::HTTP01_OVERRIDE_INGRESS_CLASS,
        ),
        (
            annotations::HTTP01_INGRESS_CLASS_NAME,
            annotations::HTTP01_OVERRIDE_INGRESS_CLASS_NAME,
        ),
    ] {
        if let Some(value) = annotations.get(from).filter(|v| !v.is_empty()) {
            overrides.insert(to.to_string(), value.clone());
        }
    }
    overrides
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(annotations: &[(&str, &str)], tls: &[(&str, &[&str])]) -> Ingress {
        let tls: Vec<serde_json::Value> = tls
            .iter()
            .map(|(secret, hosts)| serde_json::json!({"secretName": secret, "hosts": hosts}))
            .collect();
        let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "annotations": annotations},
            "spec": {"tls": tls},
        }))
        .unwrap()
    }

    #[test]
    fn one_certificate_per_secret_with_its_hosts() {
        let ing = ingress(
            &[("cert-manager.io/cluster-issuer", "letsencrypt")],
            &[
                ("blue-tls", &["blue.example", "10.0.0.1"]),
                ("green-tls", &["green.example"]),
            ],
        );
        let certs = desired(&ing, None).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].name_any(), "blue-tls");
        assert_eq!(certs[0].spec.dns_names, ["blue.example"]);
        assert_eq!(certs[0].spec.ip_addresses, ["10.0.0.1"]);
        assert_eq!(certs[0].spec.issuer_ref.kind(), "ClusterIssuer");
        assert_eq!(certs[0].spec.issuer_ref.name, "letsencrypt");
        let owner = &certs[1].owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Ingress", "u1", Some(true))
        );
    }

    #[test]
    fn annotations_pick_the_issuer_and_the_certificates_details() {
        let ing = ingress(
            &[
                ("cert-manager.io/issuer", "ca"),
                ("cert-manager.io/issuer-kind", "AWSPCAIssuer"),
                ("cert-manager.io/issuer-group", "awspca.cert-manager.io"),
                ("cert-manager.io/duration", "48h"),
                ("cert-manager.io/private-key-algorithm", "ECDSA"),
                ("cert-manager.io/private-key-rotation-policy", "Never"),
            ],
            &[("s", &["a.example"])],
        );
        let spec = &desired(&ing, None).unwrap()[0].spec;
        assert_eq!(
            (spec.issuer_ref.kind(), spec.issuer_ref.group()),
            ("AWSPCAIssuer", "awspca.cert-manager.io")
        );
        assert_eq!(spec.duration.as_deref(), Some("48h"));
        let key = spec.private_key.as_ref().unwrap();
        assert_eq!(key.algorithm, Some(crate::api::KeyAlgorithm::ECDSA));
        assert_eq!(key.rotation_policy, Some(crate::api::RotationPolicy::Never));
    }

    #[test]
    fn tls_acme_needs_a_default_issuer() {
        let ing = ingress(&[("kubernetes.io/tls-acme", "true")], &[("s", &["a.example"])]);
        assert!(desired(&ing, None).unwrap().is_empty());
        let default = IssuerRef {
            name: "le".into(),
            kind: Some("ClusterIssuer".into()),
            group: None,
        };
        assert_eq!(desired(&ing, Some(&default)).unwrap()[0].spec.issuer_ref, default);
    }

    #[test]
    fn bad_configurations_are_errors() {
        let both = ingress(
            &[("cert-manager.io/issuer", "a"), ("cert-manager.io/cluster-issuer", "b")],
            &[("s", &["a.example"])],
        );
        assert!(desired(&both, None).is_err());
        let duplicate = ingress(
            &[("cert-manager.io/issuer", "a")],
            &[("s", &["a.example"]), ("s", &["b.example"])],
        );
        assert!(desired(&duplicate, None).is_err());
        let bad_size = ingress(
            &[
                ("cert-manager.io/issuer", "a"),
                ("cert-manager.io/private-key-size", "big"),
            ],
            &[("s", &["a.example"])],
        );
        assert!(desired(&bad_size, None).is_err());
        let plain = ingress(&[], &[("s", &["a.example"])]);
        assert!(desired(&plain, None).unwrap().is_empty());
    }

    #[test]
    fn edit_in_place_and_ingress_class_become_the_solvers_overrides() {
        let ing = ingress(
            &[
                ("cert-manager.io/issuer", "le"),
                ("acme.cert-manager.io/http01-edit-in-place", "true"),
                ("acme.cert-manager.io/http01-ingress-class", "nginx"),
            ],
            &[("s", &["a.example"])],
        );
        let certificate = &desired(&ing, None).unwrap()[0];
        let annotations: Vec<(&str, &str)> = certificate
            .annotations()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            annotations,
            [
                ("acme.cert-manager.io/http01-override-ingress-class", "nginx"),
                ("acme.cert-manager.io/http01-override-ingress-name", "web"),
            ]
        );
    }
}
