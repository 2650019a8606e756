//! Warning Events on the agent's own Node: what `kubectl describe node` shows of what the agent found.

use kube::api::{Api, PostParams};
use weft_model::k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference};
use weft_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use weft_model::k8s_openapi::jiff::Timestamp;

/// Records `message` as a Warning Event with `reason` on the Node `node`, named `NODE.SUFFIX` in `default` (where
/// node Events go): one Event per finding, so a repeat (or an agent restarting) counts it up and a new message
/// replaces the old one.
pub async fn record(
    client: &kube::Client,
    node: &str,
    reason: &str,
    suffix: &str,
    message: &str,
) -> Result<(), kube::Error> {
    let uid = Api::<Node>::all(client.clone()).get(node).await?.metadata.uid;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let name = format!("{node}.{suffix}");
    // jiff is built without its clock: the time from std.
    let now = Time(Timestamp::try_from(std::time::SystemTime::now()).unwrap_or(Timestamp::UNIX_EPOCH));
    let mut event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            uid,
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.to_string()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some("weft-agent".into()),
            host: Some(node.to_string()),
        }),
        reporting_component: Some("weft-agent".into()),
        reporting_instance: Some(node.to_string()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now.clone()),
        count: Some(1),
        ..Event::default()
    };
    match events.create(&PostParams::default(), &event).await {
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let old = events.get(&name).await?;
            event.metadata = old.metadata;
            event.first_timestamp = old.first_timestamp;
            event.count = Some(old.count.unwrap_or(1) + 1);
            events.replace(&name, &PostParams::default(), &event).await.map(drop)
        }
        other => other.map(drop),
    }
}
