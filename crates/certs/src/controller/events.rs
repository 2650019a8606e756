//! Events on the objects the controllers act on (core/v1, as `kubectl describe` lists them); a failure to write
//! one is logged, never fatal.

use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use weft_model::k8s_openapi::api::core::v1::{Event, EventSource};
use weft_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use weft_model::k8s_openapi::jiff::Timestamp;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

pub async fn publish<K>(client: &Client, object: &K, type_: &str, reason: &str, message: &str)
where
    K: Resource<DynamicType = ()>,
{
    let namespace = object.namespace().unwrap_or_else(|| "default".into());
    let now = Time(Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", object.name_any())),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: object.object_ref(&()),
        type_: Some(type_.into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        source: Some(EventSource {
            component: Some("weft-certs".into()),
            ..Default::default()
        }),
        reporting_component: Some("weft.dev/certs".into()),
        reporting_instance: std::env::var("HOSTNAME").ok(),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    if let Err(e) = Api::<Event>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &event)
        .await
    {
        tracing::warn!(%namespace, reason, error = %e, "creating an event");
    }
}
