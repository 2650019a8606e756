//! Whether a Certificate's Secret is up to date, and if not why (cert-manager's issuing policy chain, with its
//! reasons), and when it is due for renewal.

use crate::api::{CertificateRequest, CertificateSpec};
use crate::pki::key;
use crate::pki::key::KeySpec;
use crate::pki::x509::{self, Info};
use crate::{annotations, secrets};
use std::net::IpAddr;
use std::time::Duration;
use weft_model::k8s_openapi::api::core::v1::Secret;

/// The names a certificate has or should have, in a comparable order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    common_name: Option<String>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    uris: Vec<String>,
    emails: Vec<String>,
}

fn sorted<T: Ord + Clone>(items: &[T]) -> Vec<T> {
    let mut items = items.to_vec();
    items.sort();
    items.dedup();
    items
}

impl Names {
    pub fn of_spec(spec: &CertificateSpec) -> Names {
        let ips: Vec<IpAddr> = spec.ip_addresses.iter().filter_map(|ip| ip.parse().ok()).collect();
        Names {
            common_name: spec.common_name.clone().filter(|cn| !cn.is_empty()),
            dns: sorted(&spec.dns_names),
            ips: sorted(&ips),
            uris: sorted(&spec.uris),
            emails: sorted(&spec.email_addresses),
        }
    }

    pub fn of_certificate(info: &Info) -> Names {
        Names {
            common_name: info.common_name.clone(),
            dns: sorted(&info.dns_names),
            ips: sorted(&info.ip_addresses),
            uris: sorted(&info.uris),
            emails: sorted(&info.emails),
        }
    }
}

/// What a Certificate needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The Secret holds a valid certificate for the spec: renew at `renewal` (unix seconds).
    UpToDate { info: Info, renewal: i64 },
    /// A new certificate is needed. `ready`: the one in the Secret may still be served meanwhile (renewal).
    Issue {
        reason: &'static str,
        message: String,
        ready: bool,
    },
}

fn issue(reason: &'static str, message: impl Into<String>) -> Verdict {
    Verdict::Issue {
        reason,
        message: message.into(),
        ready: false,
    }
}

/// The lifetime of the Certificate's certificates (cert-manager's default: 90 days).
pub fn duration(spec: &CertificateSpec) -> Duration {
    spec.duration
        .as_deref()
        .and_then(crate::duration::parse)
        .unwrap_or(crate::DEFAULT_DURATION)
}

/// When a certificate valid from `not_before` to `not_after` (unix seconds) is renewed: `renewBefore` ahead of
/// its expiry when that is shorter than its lifetime, else `renewBeforePercentage` of the lifetime ahead, else a
/// third of the lifetime ahead (at two thirds of it).
pub fn renewal_time(not_before: i64, not_after: i64, renew_before: Option<Duration>, percentage: Option<i32>) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let ahead = match (renew_before.map(|d| d.as_secs() as i64), percentage) {
        (Some(before), _) if before > 0 && before < lifetime => before,
        (_, Some(p)) if (0..100).contains(&p) => lifetime * i64::from(p) / 100,
        _ => lifetime / 3,
    };
    not_after - ahead
}

/// Decides from the Secret (and the CertificateRequest of the current revision, if any) at `now`.
pub fn evaluate(
    spec: &CertificateSpec,
    secret: Option<&Secret>,
    current: Option<&CertificateRequest>,
    now: i64,
) -> Verdict {
    let Some(secret) = secret else {
        return issue("DoesNotExist", "Issuing certificate as Secret does not exist");
    };
    let (Some(chain), Some(key_pem)) = (secrets::text(secret, "tls.crt"), secrets::text(secret, "tls.key")) else {
        return issue(
            "MissingData",
            "Issuing certificate as Secret does not contain a certificate or private key",
        );
    };
    let Ok(info) = x509::inspect(chain) else {
        return issue(
            "InvalidCertificate",
            "Issuing certificate as Secret contains an invalid certificate",
        );
    };
    let Ok(key) = key::from_pem(key_pem) else {
        return issue(
            "InvalidKeyPair",
            "Issuing certificate as Secret contains an invalid private key",
        );
    };
    if info.public_key != key.public_key_raw() {
        return issue(
            "InvalidKeyPair",
            "Issuing certificate as Secret contains a private key that does not match the certificate",
        );
    }
    match KeySpec::of(spec.private_key.as_ref()) {
        Ok(wanted) if wanted.matches(&key) => {}
        _ => {
            return issue(
                "SecretMismatch",
                "Existing private key is not up to date for spec: [spec.privateKey]",
            );
        }
    }
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let issuer = &spec.issuer_ref;
    let wrong = |annotation: &str, wanted: &str| annotations.get(annotation).is_some_and(|v| v != wanted);
    if wrong(annotations::ISSUER_NAME, &issuer.name)
        || wrong(annotations::ISSUER_KIND, issuer.kind())
        || wrong(annotations::ISSUER_GROUP, issuer.group())
    {
        return issue(
            "IncorrectIssuer",
            format!(
                "Issuing certificate as Secret was previously issued by \"{}.{}/{}\"",
                annotations
                    .get(annotations::ISSUER_KIND)
                    .map(String::as_str)
                    .unwrap_or("Issuer"),
                annotations
                    .get(annotations::ISSUER_GROUP)
                    .map(String::as_str)
                    .unwrap_or(crate::api::GROUP),
                annotations
                    .get(annotations::ISSUER_NAME)
                    .map(String::as_str)
                    .unwrap_or_default()
            ),
        );
    }
    let mut issued = Names::of_certificate(&info);
    let wanted = Names::of_spec(spec);
    // An ACME CA sets the common name to one of the DNS names when the CSR has none (Let's Encrypt, pebble).
    if wanted.common_name.is_none() && issued.common_name.as_ref().is_some_and(|cn| issued.dns.contains(cn)) {
        issued.common_name = None;
    }
    if issued != wanted || info.is_ca != spec.is_ca.unwrap_or(false) {
        return issue(
            "RequestChanged",
            "Fields on existing CertificateRequest resource not up to date: [spec]",
        );
    }
    if let Some(request) = current {
        let requested = request.spec.duration.as_deref().and_then(crate::duration::parse);
        if requested != Some(duration(spec)) || request.spec.issuer_ref != spec.issuer_ref {
            return issue(
                "RequestChanged",
                "Fields on existing CertificateRequest resource not up to date: [spec.duration spec.issuerRef]",
            );
        }
    }
    if now >= info.not_after {
        return issue(
            "Expired",
            format!("Certificate expired on {}", super::timestamp(info.not_after)),
        );
    }
    let renewal = renewal_time(
        info.not_before,
        info.not_after,
        spec.renew_before.as_deref().and_then(crate::duration::parse),
        spec.renew_before_percentage,
    );
    if now >= renewal {
        return Verdict::Issue {
            reason: "Renewing",
            message: format!(
                "Renewing certificate as renewal was scheduled at {}",
                super::timestamp(renewal)
            ),
            ready: true,
        };
    }
    Verdict::UpToDate { info, renewal }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CertificatePrivateKey, IssuerRef, KeyAlgorithm};
    use crate::pki::x509::{Signer, Template};
    use std::collections::BTreeMap;
    use weft_model::k8s_openapi::ByteString;

    fn spec() -> CertificateSpec {
        CertificateSpec {
            dns_names: vec!["a.example".into()],
            secret_name: "s".into(),
            issuer_ref: IssuerRef {
                name: "selfsigned".into(),
                ..Default::default()
            },
            private_key: Some(CertificatePrivateKey {
                algorithm: Some(KeyAlgorithm::ECDSA),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A Secret for `spec` as the controller would write it, valid for `seconds`.
    fn secret(spec: &CertificateSpec, seconds: u64) -> Secret {
        let key = key::generate(KeySpec::of(spec.private_key.as_ref()).unwrap()).unwrap();
        let csr = x509::request(spec, &key).unwrap();
        let template = Template {
            duration: Duration::from_secs(seconds),
            is_ca: false,
            usages: &[],
        };
        let cert = x509::sign(&csr, &template, Signer::SelfSigned(&key)).unwrap();
        let data = BTreeMap::from([
            ("tls.crt".to_string(), ByteString(cert.into_bytes())),
            (
                "tls.key".to_string(),
                ByteString(key::to_pem(&key, Default::default()).unwrap().into_bytes()),
            ),
        ]);
        let mut s = Secret {
            data: Some(data),
            ..Default::default()
        };
        s.metadata.annotations = Some(BTreeMap::from([(
            annotations::ISSUER_NAME.to_string(),
            spec.issuer_ref.name.clone(),
        )]));
        s
    }

    fn reason(verdict: Verdict) -> &'static str {
        match verdict {
            Verdict::UpToDate { .. } => "UpToDate",
            Verdict::Issue { reason, .. } => reason,
        }
    }

    #[test]
    fn renewal_is_at_two_thirds_unless_told_otherwise() {
        assert_eq!(renewal_time(0, 900, None, None), 600);
        assert_eq!(renewal_time(0, 900, Some(Duration::from_secs(100)), None), 800);
        // renewBefore not shorter than the lifetime: the default.
        assert_eq!(renewal_time(0, 900, Some(Duration::from_secs(900)), None), 600);
        assert_eq!(renewal_time(0, 1000, None, Some(25)), 750);
    }

    #[test]
    fn each_reason_of_cert_manager() {
        let spec = spec();
        let now = crate::controller::unix_now();
        assert_eq!(reason(evaluate(&spec, None, None, now)), "DoesNotExist");
        assert_eq!(
            reason(evaluate(&spec, Some(&Secret::default()), None, now)),
            "MissingData"
        );
        let good = secret(&spec, 3600);
        assert_eq!(reason(evaluate(&spec, Some(&good), None, now)), "UpToDate");
        assert_eq!(reason(evaluate(&spec, Some(&good), None, now + 2500)), "Renewing");
        assert_eq!(reason(evaluate(&spec, Some(&good), None, now + 3601)), "Expired");

        let mut more_names = spec.clone();
        more_names.dns_names.push("b.example".into());
        assert_eq!(reason(evaluate(&more_names, Some(&good), None, now)), "RequestChanged");
        let mut rsa = spec.clone();
        rsa.private_key = None;
        assert_eq!(reason(evaluate(&rsa, Some(&good), None, now)), "SecretMismatch");
        let mut other_issuer = spec.clone();
        other_issuer.issuer_ref.name = "ca".into();
        assert_eq!(
            reason(evaluate(&other_issuer, Some(&good), None, now)),
            "IncorrectIssuer"
        );

        let mut other_key = good.clone();
        let stranger = secret(&spec, 3600);
        other_key
            .data
            .as_mut()
            .unwrap()
            .insert("tls.key".into(), stranger.data.unwrap()["tls.key"].clone());
        assert_eq!(reason(evaluate(&spec, Some(&other_key), None, now)), "InvalidKeyPair");
    }

    #[test]
    fn a_changed_duration_is_a_changed_request() {
        let mut spec = spec();
        let good = secret(&spec, 3600);
        let mut request = CertificateRequest::new("s-1", Default::default());
        request.spec.issuer_ref = spec.issuer_ref.clone();
        request.spec.duration = Some("2160h".into());
        let now = crate::controller::unix_now();
        assert_eq!(reason(evaluate(&spec, Some(&good), Some(&request), now)), "UpToDate");
        spec.duration = Some("1h".into());
        assert_eq!(
            reason(evaluate(&spec, Some(&good), Some(&request), now)),
            "RequestChanged"
        );
    }
}
