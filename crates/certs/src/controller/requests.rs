//! CertificateRequests: approved (cert-manager's built-in approver), then signed by their issuer; the outcome is
//! the Ready condition: Issued, Pending (issuer missing or not ready, ACME in progress) or Failed.

use super::{Context, Error, events, retry, status_patch};
use crate::api::{CertificateRequest, CertificateRequestStatus, Condition, Order, condition, set_condition};
use crate::issuer::{self, Outcome};
use base64::Engine;
use futures::Stream;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// A request waiting for its issuer is looked at again this often, besides the back-off.
const PENDING_RECHECK: Duration = Duration::from_secs(5);

pub fn controller(
    ctx: Arc<Context>,
) -> impl Stream<Item = Result<(ObjectRef<CertificateRequest>, Action), impl std::error::Error>> {
    Controller::new(
        Api::<CertificateRequest>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    // An ACME request's Order: its request reads the outcome as soon as the Order has one.
    .owns(Api::<Order>::all(ctx.client.clone()), watcher::Config::default())
    .run(
        reconcile,
        |request: Arc<CertificateRequest>, error: &Error, ctx: Arc<Context>| retry(&ctx, key(&request), error),
        ctx,
    )
}

fn key(request: &CertificateRequest) -> String {
    format!(
        "CertificateRequest/{}/{}",
        request.namespace().unwrap_or_default(),
        request.name_any()
    )
}

/// Whether the request has its final answer (Issued, Failed or Denied).
pub fn finished(status: Option<&CertificateRequestStatus>) -> bool {
    let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
    crate::api::is_true(conditions, "Denied")
        || crate::api::is_true(conditions, "InvalidRequest")
        || condition(conditions, "Ready")
            .is_some_and(|c| matches!(c.reason.as_deref(), Some("Issued" | "Failed" | "Denied")))
}

async fn reconcile(cached: Arc<CertificateRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    if finished(cached.status.as_ref()) {
        ctx.succeeded(&key(&cached));
        return Ok(Action::await_change());
    }
    // The watch's copy may predate this controller's last write: a request signed twice would change its
    // certificate under the Certificate controller. The API's copy is current.
    let namespace = cached.namespace().unwrap_or_default();
    let api = Api::<CertificateRequest>::namespaced(ctx.client.clone(), &namespace);
    let Some(request) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let old = request.status.as_ref();
    if finished(old) {
        return Ok(Action::await_change());
    }
    let mut status = old.cloned().unwrap_or_default();
    let now = super::now();
    if condition(&status.conditions, "Approved").is_none() {
        let approved = Condition::new(
            "Approved",
            true,
            "cert-manager.io",
            "Certificate request has been approved by cert-manager.io",
        );
        set_condition(&mut status.conditions, approved, &now);
    }
    let issuer_ref = &request.spec.issuer_ref;
    let resolved = issuer::resolve(
        &ctx.client,
        &namespace,
        issuer_ref,
        &ctx.options.cluster_resource_namespace,
    )
    .await?;
    // The Ready condition, the Event's reason when it differs, and whether to look again.
    let (ready, reason, message, waiting, event) = match &resolved {
        None if issuer_ref.group() != crate::api::GROUP => {
            // Another group's issuer: its own controller answers the request.
            return Ok(Action::await_change());
        }
        None => {
            let kind = issuer_ref.kind();
            let message = format!(
                "Referenced \"{kind}\" not found: {}.cert-manager.io \"{}\" not found",
                kind.to_lowercase(),
                issuer_ref.name
            );
            (false, "Pending", message, true, "IssuerNotFound")
        }
        Some(issuer) if !issuer.ready() => (
            false,
            "Pending",
            "Referenced issuer does not have a Ready status condition".into(),
            true,
            "IssuerNotReady",
        ),
        Some(issuer) => match issuer::sign(&ctx.client, &ctx.options, issuer, &request).await? {
            Outcome::Issued { certificate, ca } => {
                let encode = |pem: String| base64::engine::general_purpose::STANDARD.encode(pem);
                status.certificate = Some(encode(certificate));
                status.ca = ca.map(encode);
                (
                    true,
                    "Issued",
                    "Certificate fetched from issuer successfully".into(),
                    false,
                    "CertificateIssued",
                )
            }
            Outcome::Pending { reason, message } => (false, "Pending", message, true, reason),
            Outcome::Failed(message) => {
                status.failure_time = Some(now.clone());
                (false, "Failed", message, false, "Failed")
            }
        },
    };
    set_condition(
        &mut status.conditions,
        Condition::new("Ready", ready, reason, message.clone()),
        &now,
    );
    if old != Some(&status) {
        let patch = Patch::Merge(status_patch(old, &status));
        api.patch_status(&request.name_any(), &PatchParams::default(), &patch)
            .await?;
        let was = old
            .and_then(|s| condition(&s.conditions, "Ready"))
            .and_then(|c| c.message.clone());
        if was.as_deref() != Some(&message) {
            let type_ = if reason == "Failed" {
                events::WARNING
            } else {
                events::NORMAL
            };
            events::publish(&ctx.client, &request, type_, event, &message).await;
        }
    }
    if waiting {
        Ok(Action::requeue(PENDING_RECHECK))
    } else {
        ctx.succeeded(&key(&request));
        Ok(Action::await_change())
    }
}
