//! The controllers (kube-runtime's `Controller`, one per kind): Issuers and ClusterIssuers Ready, Certificates
//! issued and renewed through CertificateRequests, the requests signed, and ingress-shim's Certificates. Each
//! reconcile that fails is retried with an exponential back-off per object.

mod certificates;
pub(crate) mod events;
mod issuers;
mod policy;
mod requests;
mod shim;

use crate::api::IssuerRef;
use futures::StreamExt;
use kube::Client;
use kube::runtime::controller::Action;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub use policy::renewal_time;
pub use shim::desired as shim_certificates;

/// How the controllers behave (the flags of `weft certs`).
#[derive(Clone, Debug)]
pub struct Options {
    /// Where ClusterIssuers' Secrets live (cert-manager's --cluster-resource-namespace).
    pub cluster_resource_namespace: String,
    /// The issuer of Ingresses annotated only `kubernetes.io/tls-acme: "true"` (cert-manager's
    /// --default-issuer-name/-kind/-group).
    pub default_issuer: Option<IssuerRef>,
    /// The image of ACME HTTP-01 solver pods (weft's own: they run `weft acme-solver`).
    pub acme_solver_image: String,
}

/// A reconcile that did not finish; retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Pki(#[from] crate::pki::Error),
    #[error("{0}")]
    Waiting(String),
}

pub struct Context {
    pub client: Client,
    pub options: Options,
    /// Consecutive failures per object (kind/namespace/name), for the back-off.
    failures: Mutex<HashMap<String, u32>>,
}

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(300);

impl Context {
    /// The delay before the next try of `key`, doubling with each failure in a row.
    fn failed(&self, key: String) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        backoff(*count)
    }

    fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// 1 s, 2 s, 4 s ... up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(LAST_RETRY)
}

/// The retry after a failed reconcile of `key`.
fn retry(ctx: &Context, key: String, error: &Error) -> Action {
    let delay = ctx.failed(key.clone());
    tracing::warn!(object = %key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Now, as the API writes times (RFC 3339, seconds).
pub fn now() -> String {
    timestamp(weft_model::k8s_openapi::jiff::Timestamp::now().as_second())
}

/// Unix seconds as RFC 3339.
pub fn timestamp(seconds: i64) -> String {
    weft_model::k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub fn unix_now() -> i64 {
    weft_model::k8s_openapi::jiff::Timestamp::now().as_second()
}

/// A merge patch that turns status `old` into `new`: fields `new` no longer has are set to null (a merge patch
/// leaves absent fields as they are).
fn status_patch<S: serde::Serialize>(old: Option<&S>, new: &S) -> serde_json::Value {
    let mut new = serde_json::to_value(new).unwrap_or_default();
    if let (Some(old), Some(fields)) = (old.and_then(|o| serde_json::to_value(o).ok()), new.as_object_mut()) {
        for key in old.as_object().into_iter().flat_map(|o| o.keys()) {
            fields.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    serde_json::json!({ "status": new })
}

/// Runs every controller until one of them stops (their watches end only when the process does).
pub async fn run(client: Client, options: Options) {
    let ctx = std::sync::Arc::new(Context {
        client,
        options,
        failures: Mutex::new(HashMap::new()),
    });
    tokio::select! {
        () = drain("Issuer", issuers::issuers(ctx.clone())) => {}
        () = drain("ClusterIssuer", issuers::cluster_issuers(ctx.clone())) => {}
        () = drain("Certificate", certificates::controller(ctx.clone())) => {}
        () = drain("CertificateRequest", requests::controller(ctx.clone())) => {}
        () = drain("Ingress", shim::controller(ctx.clone())) => {}
    }
}

/// Runs a controller's stream; its errors were logged by the error policy (reconciles) or are the watch's own
/// (logged here at debug: the watcher retries them).
async fn drain<T, E: std::fmt::Display>(kind: &'static str, stream: impl futures::Stream<Item = Result<T, E>>) {
    stream
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(kind, error = %e, "controller");
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), LAST_RETRY);
    }

    #[test]
    fn a_status_patch_clears_what_the_new_status_dropped() {
        let old = serde_json::json!({"revision": 1, "nextPrivateKeySecretName": "x"});
        let new = serde_json::json!({"revision": 2});
        let patch = status_patch(Some(&old), &new);
        assert_eq!(
            patch,
            serde_json::json!({"status": {"revision": 2, "nextPrivateKeySecretName": null}})
        );
    }
}
