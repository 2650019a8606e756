//! Certificates: kept issued and renewed. When the Secret is not up to date (policy), a private key is made (kept
//! in a temporary Secret, or the Secret's own with rotationPolicy Never), a CertificateRequest for the next
//! revision is created, and once it is Issued the Secret is written in one update: type kubernetes.io/tls,
//! tls.crt (the chain), tls.key, ca.crt and cert-manager's annotations. A failed request is retried with back-off.

use super::policy::{self, Verdict};
use super::{Context, Error, events, retry, status_patch};
use crate::api::{
    Certificate, CertificateRequest, CertificateRequestSpec, CertificateStatus, Condition, RotationPolicy, condition,
    remove_condition, set_condition,
};
use crate::pki::key::{self, KeySpec};
use crate::pki::x509;
use crate::{annotations, secrets};
use base64::Engine;
use futures::Stream;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use weft_model::k8s_openapi::ByteString;
use weft_model::k8s_openapi::api::core::v1::Secret;

/// While a request is in flight the Certificate is looked at again this often, besides the request's changes.
const ISSUING_RECHECK: Duration = Duration::from_secs(10);

pub fn controller(
    ctx: Arc<Context>,
) -> impl Stream<Item = Result<(ObjectRef<Certificate>, Action), impl std::error::Error>> {
    let client = ctx.client.clone();
    let secrets = watcher::Config::default().labels(&format!("{}=true", annotations::FAO));
    Controller::new(Api::<Certificate>::all(client.clone()), watcher::Config::default())
        .owns(
            Api::<CertificateRequest>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(Api::<Secret>::all(client), secrets, |secret: Secret| {
            let namespace = secret.namespace().unwrap_or_default();
            secret
                .annotations()
                .get(annotations::CERTIFICATE_NAME)
                .map(|name| ObjectRef::new(name).within(&namespace))
        })
        .run(
            reconcile,
            |cert: Arc<Certificate>, error: &Error, ctx: Arc<Context>| retry(&ctx, key(&cert), error),
            ctx,
        )
}

fn key(cert: &Certificate) -> String {
    format!(
        "Certificate/{}/{}",
        cert.namespace().unwrap_or_default(),
        cert.name_any()
    )
}

/// The Certificate's APIs and names, for one reconcile.
struct Target<'a> {
    ctx: &'a Context,
    cert: &'a Certificate,
    namespace: String,
    name: String,
    certs: Api<Certificate>,
    requests: Api<CertificateRequest>,
    secrets: Api<Secret>,
}

async fn reconcile(cached: Arc<Certificate>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = cached.namespace().unwrap_or_default();
    // The watch's copy may predate this controller's last status write (a Secret event can arrive first): acting
    // on it would write an old revision back. The API's copy is current.
    let api = Api::<Certificate>::namespaced(ctx.client.clone(), &namespace);
    let Some(cert) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let t = Target {
        ctx: &ctx,
        cert: &cert,
        name: cert.name_any(),
        certs: api,
        requests: Api::namespaced(ctx.client.clone(), &namespace),
        secrets: Api::namespaced(ctx.client.clone(), &namespace),
        namespace,
    };
    let old = cert.status.as_ref();
    let mut status = old.cloned().unwrap_or_default();
    let secret = t.secrets.get_opt(&cert.spec.secret_name).await?;
    let revision = status.revision.unwrap_or(0);
    let current = match revision {
        0 => None,
        n => t.requests.get_opt(&format!("{}-{n}", t.name)).await?,
    };
    let now = super::unix_now();
    let action = match policy::evaluate(&cert.spec, secret.as_ref(), current.as_ref(), now) {
        Verdict::UpToDate { info, renewal } => {
            up_to_date(&t, &mut status, &info, renewal).await?;
            ctx.succeeded(&key(&cert));
            Action::requeue(Duration::from_secs((renewal - now).max(1) as u64))
        }
        Verdict::Issue { reason, message, ready } => {
            let ready_condition = if ready {
                Condition::new("Ready", true, "Ready", "Certificate is up to date and has not expired")
            } else {
                Condition::new("Ready", false, reason, message.clone())
            };
            set_condition(&mut status.conditions, ready_condition, &super::now());
            if !crate::api::is_true(&status.conditions, "Issuing") {
                if let Some(retry_at) = backing_off(&status, now) {
                    save(&t, old, &status).await?;
                    return Ok(Action::requeue(Duration::from_secs((retry_at - now).max(1) as u64)));
                }
                let issuing = Condition::new("Issuing", true, reason, message.clone());
                set_condition(&mut status.conditions, issuing, &super::now());
                events::publish(&ctx.client, &cert, events::NORMAL, "Issuing", &message).await;
            }
            issue(&t, &mut status, secret.as_ref(), revision + 1).await?
        }
    };
    save(&t, old, &status).await?;
    Ok(action)
}

/// After a failed issuance: the time (unix seconds) before which no new request is made.
fn backing_off(status: &CertificateStatus, now: i64) -> Option<i64> {
    let failed = status.last_failure_time.as_deref()?;
    let failed: weft_model::k8s_openapi::jiff::Timestamp = failed.parse().ok()?;
    let attempts = status.failed_issuance_attempts.unwrap_or(1).clamp(1, 32) as u32;
    let retry_at = failed.as_second() + super::backoff(attempts).as_secs() as i64;
    (now < retry_at).then_some(retry_at)
}

async fn save(t: &Target<'_>, old: Option<&CertificateStatus>, new: &CertificateStatus) -> Result<(), Error> {
    if old != Some(new) {
        let patch = Patch::Merge(status_patch(old, new));
        t.certs.patch_status(&t.name, &PatchParams::default(), &patch).await?;
    }
    Ok(())
}

/// The Secret is current: Ready, the certificate's times, and no leftover temporary key.
async fn up_to_date(
    t: &Target<'_>,
    status: &mut CertificateStatus,
    info: &x509::Info,
    renewal: i64,
) -> Result<(), Error> {
    let ready = Condition::new("Ready", true, "Ready", "Certificate is up to date and has not expired");
    set_condition(&mut status.conditions, ready, &super::now());
    remove_condition(&mut status.conditions, "Issuing");
    status.not_before = Some(super::timestamp(info.not_before));
    status.not_after = Some(super::timestamp(info.not_after));
    status.renewal_time = Some(super::timestamp(renewal));
    if status.revision.is_none() {
        // A Secret that was already right (e.g. written before this controller ran) is revision 1.
        status.revision = Some(1);
    }
    if let Some(next) = status.next_private_key_secret_name.take() {
        delete_quietly(&t.secrets, &next).await?;
    }
    Ok(())
}

async fn delete_quietly<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One step of issuing `revision`: make the key and the request, wait for it, or write the Secret.
async fn issue(
    t: &Target<'_>,
    status: &mut CertificateStatus,
    secret: Option<&Secret>,
    revision: i64,
) -> Result<Action, Error> {
    let request_name = format!("{}-{revision}", t.name);
    let request = t.requests.get_opt(&request_name).await?;
    let Some(request) = request else {
        create_request(t, status, secret, &request_name, revision).await?;
        return Ok(Action::requeue(ISSUING_RECHECK));
    };
    let owned = request
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == t.cert.uid().as_ref());
    if !owned || !matches_spec(t.cert, &request) {
        // Left from an older spec (or another object): a new request replaces it.
        delete_quietly(&t.requests, &request_name).await?;
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let request_status = request.status.clone().unwrap_or_default();
    let ready = condition(&request_status.conditions, "Ready");
    match ready.and_then(|c| c.reason.as_deref()) {
        Some("Issued") => {
            write_secret(t, status, secret, &request, revision).await?;
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Some("Failed" | "Denied") => {
            let failed_at = ready.and_then(|c| c.last_transition_time.as_deref());
            if recorded(status, failed_at) {
                // The back-off after this failure is over: a new request replaces it.
                delete_quietly(&t.requests, &request_name).await?;
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            // The failed request (and an ACME issuer's Order and Challenges under it) stays until the next
            // attempt, so that it can be looked at meanwhile.
            let message = ready.and_then(|c| c.message.clone()).unwrap_or_default();
            let message = format!("The certificate request has failed to complete and will be retried: {message}");
            fail(t, status, &message).await?;
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        _ => Ok(Action::requeue(ISSUING_RECHECK)),
    }
}

/// Whether the Certificate has recorded a request failure of time `failed_at` already (its last failure is no
/// earlier).
fn recorded(status: &CertificateStatus, failed_at: Option<&str>) -> bool {
    let parse = |t: &str| t.parse::<weft_model::k8s_openapi::jiff::Timestamp>().ok();
    match (
        status.last_failure_time.as_deref().and_then(parse),
        failed_at.and_then(parse),
    ) {
        (Some(recorded), Some(failed)) => recorded >= failed,
        _ => false,
    }
}

/// Records a failed issuance: Issuing False, the failure time and count (the next try waits for the back-off).
async fn fail(t: &Target<'_>, status: &mut CertificateStatus, message: &str) -> Result<(), Error> {
    set_condition(
        &mut status.conditions,
        Condition::new("Issuing", false, "Failed", message),
        &super::now(),
    );
    status.last_failure_time = Some(super::now());
    status.failed_issuance_attempts = Some(status.failed_issuance_attempts.unwrap_or(0) + 1);
    events::publish(&t.ctx.client, t.cert, events::WARNING, "Failed", message).await;
    Ok(())
}

/// Whether a request still asks for what the Certificate's spec asks.
fn matches_spec(cert: &Certificate, request: &CertificateRequest) -> bool {
    let spec = &cert.spec;
    let Ok(csr) = crate::issuer::csr(request) else {
        return false;
    };
    let names = x509::request_info(&csr).map(|info| policy::Names::of_certificate(&info));
    request.spec.issuer_ref == spec.issuer_ref
        && request.spec.duration.as_deref().and_then(crate::duration::parse) == Some(policy::duration(spec))
        && request.spec.is_ca.unwrap_or(false) == spec.is_ca.unwrap_or(false)
        && names.ok() == Some(policy::Names::of_spec(spec))
}

/// The key for the next revision and the Secret it is in: the Secret's own under rotationPolicy Never (when it
/// fits the spec), else a temporary Secret made once per issuance.
async fn private_key(
    t: &Target<'_>,
    status: &mut CertificateStatus,
    secret: Option<&Secret>,
    wanted: KeySpec,
) -> Result<(rcgen::KeyPair, String), Error> {
    let spec = &t.cert.spec;
    let rotation = spec
        .private_key
        .as_ref()
        .and_then(|k| k.rotation_policy)
        .unwrap_or_default();
    if rotation == RotationPolicy::Never {
        let existing = secret
            .and_then(|s| secrets::text(s, "tls.key"))
            .and_then(|k| key::from_pem(k).ok());
        if let Some(existing) = existing.filter(|k| wanted.matches(k)) {
            return Ok((existing, spec.secret_name.clone()));
        }
    }
    if let Some(name) = &status.next_private_key_secret_name {
        let kept = t.secrets.get_opt(name).await?;
        let key = kept
            .as_ref()
            .and_then(|s| secrets::text(s, "tls.key"))
            .and_then(|k| key::from_pem(k).ok());
        if let Some(key) = key.filter(|k| wanted.matches(k)) {
            return Ok((key, name.clone()));
        }
    }
    // RSA keys take a while: off the async threads.
    let key = tokio::task::spawn_blocking(move || key::generate(wanted))
        .await
        .map_err(|e| Error::Waiting(format!("generating a key: {e}")))??;
    let pem = key::to_pem(&key, crate::api::KeyEncoding::PKCS8)?;
    let temporary = Secret {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", t.name)),
            namespace: Some(t.namespace.clone()),
            labels: Some(BTreeMap::from([(
                annotations::NEXT_PRIVATE_KEY.to_string(),
                "true".to_string(),
            )])),
            owner_references: t.cert.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("tls.key".to_string(), ByteString(pem.into_bytes()))])),
        ..Default::default()
    };
    let created = t.secrets.create(&PostParams::default(), &temporary).await?;
    let name = created.name_any();
    status.next_private_key_secret_name = Some(name.clone());
    // Saved at once: a later failure must not lose track of the key.
    let patch = serde_json::json!({"status": {"nextPrivateKeySecretName": name}});
    t.certs
        .patch_status(&t.name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    let message = format!("Stored new private key in temporary Secret resource \"{name}\"");
    events::publish(&t.ctx.client, t.cert, events::NORMAL, "Generated", &message).await;
    Ok((key, name))
}

async fn create_request(
    t: &Target<'_>,
    status: &mut CertificateStatus,
    secret: Option<&Secret>,
    request_name: &str,
    revision: i64,
) -> Result<(), Error> {
    let spec = &t.cert.spec;
    let wanted = match KeySpec::of(spec.private_key.as_ref()) {
        Ok(wanted) => wanted,
        Err(e) => return fail(t, status, &e.to_string()).await,
    };
    let (key, key_secret) = private_key(t, status, secret, wanted).await?;
    let csr = match x509::request(spec, &key) {
        Ok(csr) => csr,
        Err(e) => return fail(t, status, &format!("Failed to create the CSR: {e}")).await,
    };
    let usages = if spec.usages.is_empty() {
        x509::DEFAULT_USAGES.iter().map(|u| u.to_string()).collect()
    } else {
        spec.usages.clone()
    };
    let request = CertificateRequest {
        metadata: ObjectMeta {
            name: Some(request_name.to_string()),
            namespace: Some(t.namespace.clone()),
            annotations: Some(request_annotations(t.cert, revision, key_secret)),
            labels: t.cert.metadata.labels.clone(),
            owner_references: t.cert.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: CertificateRequestSpec {
            duration: Some(format_duration(policy::duration(spec))),
            issuer_ref: spec.issuer_ref.clone(),
            request: base64::engine::general_purpose::STANDARD.encode(csr),
            is_ca: spec.is_ca,
            usages,
            ..Default::default()
        },
        status: None,
    };
    t.requests.create(&PostParams::default(), &request).await?;
    let message = format!("Created new CertificateRequest resource \"{request_name}\"");
    events::publish(&t.ctx.client, t.cert, events::NORMAL, "Requested", &message).await;
    Ok(())
}

/// A duration as Go prints it (2160h0m0s), as cert-manager writes it into requests.
fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, seconds) => format!("{seconds}s"),
        (0, minutes, seconds) => format!("{minutes}m{seconds}s"),
        (hours, minutes, seconds) => format!("{hours}h{minutes}m{seconds}s"),
    }
}

/// Writes the issued certificate and its key into the Secret (one create or update: never half a Secret), then
/// the status of the new revision.
async fn write_secret(
    t: &Target<'_>,
    status: &mut CertificateStatus,
    secret: Option<&Secret>,
    request: &CertificateRequest,
    revision: i64,
) -> Result<(), Error> {
    let spec = &t.cert.spec;
    let decode = |b64: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    let request_status = request.status.clone().unwrap_or_default();
    let Some(chain) = request_status.certificate.as_deref().and_then(decode) else {
        return fail(t, status, "the issued CertificateRequest holds no certificate").await;
    };
    let key_secret = request
        .annotations()
        .get(annotations::PRIVATE_KEY_SECRET_NAME)
        .cloned()
        .unwrap_or_default();
    let key_pem = match t.secrets.get_opt(&key_secret).await? {
        Some(s) => secrets::text(&s, "tls.key").map(str::to_string),
        None => None,
    };
    let key = key_pem.as_deref().and_then(|k| key::from_pem(k).ok());
    let info = x509::inspect(&chain);
    let (Some(key), Ok(info)) = (key, info) else {
        let message = format!("the private key in Secret \"{key_secret}\" or the issued certificate is unreadable");
        return fail(t, status, &message).await;
    };
    if info.public_key != key.public_key_raw() {
        return fail(t, status, "the issued certificate is not for the request's private key").await;
    }
    let encoding = spec.private_key.as_ref().and_then(|k| k.encoding).unwrap_or_default();
    let mut data = secret.and_then(|s| s.data.clone()).unwrap_or_default();
    data.insert("tls.crt".into(), ByteString(chain.into_bytes()));
    data.insert("tls.key".into(), ByteString(key::to_pem(&key, encoding)?.into_bytes()));
    match request_status.ca.as_deref().and_then(decode) {
        Some(ca) => data.insert("ca.crt".into(), ByteString(ca.into_bytes())),
        None => data.remove("ca.crt"),
    };
    let mut metadata = secret.map(|s| s.metadata.clone()).unwrap_or_else(|| ObjectMeta {
        name: Some(spec.secret_name.clone()),
        namespace: Some(t.namespace.clone()),
        ..Default::default()
    });
    let annotations = metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.extend(secret_annotations(t.cert, &info));
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(annotations::FAO.into(), "true".into());
    if let Some(template) = &spec.secret_template {
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .extend(template.annotations.clone());
        metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(template.labels.clone());
    }
    let new = Secret {
        metadata,
        data: Some(data),
        type_: Some("kubernetes.io/tls".into()),
        ..Default::default()
    };
    match secret {
        Some(_) => {
            t.secrets
                .replace(&spec.secret_name, &PostParams::default(), &new)
                .await?
        }
        None => t.secrets.create(&PostParams::default(), &new).await?,
    };
    if key_secret != spec.secret_name {
        delete_quietly(&t.secrets, &key_secret).await?;
    }
    status.revision = Some(revision);
    status.next_private_key_secret_name = None;
    status.last_failure_time = None;
    status.failed_issuance_attempts = None;
    remove_condition(&mut status.conditions, "Issuing");
    let renewal = policy::renewal_time(
        info.not_before,
        info.not_after,
        spec.renew_before.as_deref().and_then(crate::duration::parse),
        spec.renew_before_percentage,
    );
    up_to_date(t, status, &info, renewal).await?;
    events::publish(
        &t.ctx.client,
        t.cert,
        events::NORMAL,
        "Issuing",
        "The certificate has been successfully issued",
    )
    .await;
    Ok(())
}

/// A request's annotations: cert-manager's, and the Certificate's ACME solver overrides (for its Order).
fn request_annotations(cert: &Certificate, revision: i64, key_secret: String) -> BTreeMap<String, String> {
    let mut annotations: BTreeMap<String, String> = cert
        .annotations()
        .iter()
        .filter(|(k, _)| k.starts_with(annotations::HTTP01_OVERRIDE_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.extend([
        (annotations::CERTIFICATE_NAME.to_string(), cert.name_any()),
        (annotations::CERTIFICATE_REVISION.to_string(), revision.to_string()),
        (annotations::PRIVATE_KEY_SECRET_NAME.to_string(), key_secret),
    ]);
    annotations
}

/// cert-manager's annotations on a certificate's Secret.
fn secret_annotations(cert: &Certificate, info: &x509::Info) -> BTreeMap<String, String> {
    let issuer = &cert.spec.issuer_ref;
    let join = |items: Vec<String>| items.join(",");
    BTreeMap::from([
        (annotations::CERTIFICATE_NAME.to_string(), cert.name_any()),
        (annotations::ISSUER_NAME.to_string(), issuer.name.clone()),
        (annotations::ISSUER_KIND.to_string(), issuer.kind().to_string()),
        (annotations::ISSUER_GROUP.to_string(), issuer.group().to_string()),
        (
            annotations::COMMON_NAME.to_string(),
            info.common_name.clone().unwrap_or_default(),
        ),
        (annotations::ALT_NAMES.to_string(), join(info.dns_names.clone())),
        (
            annotations::IP_SANS.to_string(),
            join(info.ip_addresses.iter().map(|ip| ip.to_string()).collect()),
        ),
        (annotations::URI_SANS.to_string(), join(info.uris.clone())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(format_duration(Duration::from_secs(2160 * 3600)), "2160h0m0s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(20)), "20s");
    }
}
