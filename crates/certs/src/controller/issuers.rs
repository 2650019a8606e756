//! Issuers and ClusterIssuers: their Ready condition, checked again when a Secret they name changes and, while not
//! ready, with back-off.

use super::{Context, Error, events, retry, status_patch};
use crate::api::{ClusterIssuer, Condition, Issuer, IssuerConfig, IssuerStatus, set_condition};
use crate::issuer::{self, Resolved};
use futures::Stream;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use weft_model::k8s_openapi::api::core::v1::Secret;

/// Ready issuers are checked again this often (their CA Secret may have gone bad).
const RECHECK: Duration = Duration::from_secs(600);

/// The Secret an issuer config names (a CA's).
fn secret_name(config: &IssuerConfig) -> Option<&str> {
    config.ca.as_ref().map(|ca| ca.secret_name.as_str())
}

pub fn issuers(ctx: Arc<Context>) -> impl Stream<Item = Result<(ObjectRef<Issuer>, Action), impl std::error::Error>> {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<Issuer>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    controller
        .watches(
            Api::<Secret>::all(client),
            watcher::Config::default(),
            move |secret: Secret| {
                let (namespace, name) = (secret.namespace(), secret.name_any());
                store
                    .state()
                    .into_iter()
                    .filter(|i| i.namespace() == namespace && secret_name(&i.spec.config) == Some(name.as_str()))
                    .map(|i| ObjectRef::from_obj(&*i))
                    .collect::<Vec<_>>()
            },
        )
        .run(
            |issuer: Arc<Issuer>, ctx: Arc<Context>| async move {
                let namespace = issuer.namespace().unwrap_or_default();
                let resolved = Resolved {
                    kind: "Issuer",
                    name: issuer.name_any(),
                    config: issuer.spec.config.clone(),
                    secrets_namespace: namespace.clone(),
                    conditions: Vec::new(),
                };
                let api = Api::<Issuer>::namespaced(ctx.client.clone(), &namespace);
                reconcile(&ctx, &api, &*issuer, issuer.status.as_ref(), &resolved).await
            },
            |issuer: Arc<Issuer>, error: &Error, ctx: Arc<Context>| retry(&ctx, key(&*issuer), error),
            ctx,
        )
}

pub fn cluster_issuers(
    ctx: Arc<Context>,
) -> impl Stream<Item = Result<(ObjectRef<ClusterIssuer>, Action), impl std::error::Error>> {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<ClusterIssuer>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    let namespace = ctx.options.cluster_resource_namespace.clone();
    controller
        .watches(
            Api::<Secret>::namespaced(client, &namespace),
            watcher::Config::default(),
            move |secret: Secret| {
                let name = secret.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|i| secret_name(&i.spec.config) == Some(name.as_str()))
                    .map(|i| ObjectRef::from_obj(&*i))
                    .collect::<Vec<_>>()
            },
        )
        .run(
            |issuer: Arc<ClusterIssuer>, ctx: Arc<Context>| async move {
                let resolved = Resolved {
                    kind: "ClusterIssuer",
                    name: issuer.name_any(),
                    config: issuer.spec.config.clone(),
                    secrets_namespace: ctx.options.cluster_resource_namespace.clone(),
                    conditions: Vec::new(),
                };
                let api = Api::<ClusterIssuer>::all(ctx.client.clone());
                reconcile(&ctx, &api, &*issuer, issuer.status.as_ref(), &resolved).await
            },
            |issuer: Arc<ClusterIssuer>, error: &Error, ctx: Arc<Context>| retry(&ctx, key(&*issuer), error),
            ctx,
        )
}

fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Sets the Ready condition from the issuer's setup; an Event when it changes. Not ready: an Err, so that the
/// controller retries with back-off.
async fn reconcile<K>(
    ctx: &Context,
    api: &Api<K>,
    object: &K,
    status: Option<&IssuerStatus>,
    resolved: &Resolved,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let readiness = issuer::setup(&ctx.client, resolved).await;
    let mut new = status.cloned().unwrap_or_default();
    let mut ready = Condition::new("Ready", readiness.ready, readiness.reason, readiness.message.clone());
    ready.observed_generation = object.meta().generation;
    set_condition(&mut new.conditions, ready, &super::now());
    if let Some(account) = &readiness.account {
        new.acme = Some(account.clone());
    }
    if status != Some(&new) {
        let changed = status
            .and_then(|s| crate::api::condition(&s.conditions, "Ready"))
            .is_none_or(|c| {
                c.reason.as_deref() != Some(readiness.reason) || c.message.as_deref() != Some(&readiness.message)
            });
        api.patch_status(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status_patch(status, &new)),
        )
        .await?;
        if changed {
            let type_ = if readiness.ready {
                events::NORMAL
            } else {
                events::WARNING
            };
            events::publish(&ctx.client, object, type_, readiness.reason, &readiness.message).await;
        }
    }
    if readiness.ready {
        ctx.succeeded(&key(object));
        Ok(Action::requeue(RECHECK))
    } else {
        Err(Error::Waiting(readiness.message))
    }
}
