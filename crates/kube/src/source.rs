//! `KubeSource`: the cluster through the Kubernetes API, as a node component's `Source`. One kube-rs watcher per
//! kind (list, then watch; resumption, relists after `410 Gone` and back-off are the watcher's) feeds a `Mirror`
//! on a thread of its own with a single-threaded tokio runtime; the component, synchronous, blocks in `next`.
//! `stats` counts what the watchers went through, for the component's `/metrics`.

use crate::client::{ClientOptions, client};
use crate::mirror::Mirror;
use crate::stats::WatchStats;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;
use weft_model::k8s_openapi::api::apps::v1::Deployment;
use weft_model::k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use weft_model::k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_model::k8s_openapi::api::networking::v1::NetworkPolicy;
use weft_model::{Object, Snapshot, Source, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the kubeconfig {path}: {msg}")]
    Kubeconfig { path: String, msg: String },
    #[error("no Kubernetes API configuration (no --kubeconfig, no in-cluster service account): {0}")]
    Infer(String),
    #[error("the Kubernetes API client: {0}")]
    Client(String),
    #[error("kind {0}: not a resource the API serves")]
    UnknownKind(String),
    #[error("starting the watch thread: {0}")]
    Thread(std::io::Error),
}

pub struct KubeSource {
    shared: Arc<Shared>,
    stats: Arc<WatchStats>,
    /// The API server's URL, for errors.
    server: String,
}

/// What the watch thread and the component share.
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    mirror: Mirror,
    /// The latest watch error not yet reported by `next` (the watcher retries by itself).
    error: Option<String>,
    /// Set when the watch thread ended: nothing more will come.
    ended: Option<String>,
}

/// One watcher's events, each with the number of its kind.
type Events = BoxStream<'static, (usize, Result<Event<Object>, watcher::Error>)>;

impl KubeSource {
    /// Follows `kinds` (weft-model kind names of built-in kinds) and the custom resources `custom` through the
    /// API `options` lead to, keeping objects whole.
    pub fn start(options: &ClientOptions, kinds: &[&str], custom: &[ApiResource]) -> Result<KubeSource, Error> {
        KubeSource::start_with(options, kinds, custom, |_| {})
    }

    /// As `start`, with `keep` dropping from each object as it arrives what the component never reads (a
    /// projection: what it holds of a cluster is then what it uses).
    pub fn start_with(
        options: &ClientOptions,
        kinds: &[&str],
        custom: &[ApiResource],
        keep: fn(&mut Object),
    ) -> Result<KubeSource, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        // The client is made inside the runtime that will drive it (its connection pool spawns tasks there).
        let (client, server) = runtime.block_on(client(options))?;
        let resources = kinds
            .iter()
            .map(|kind| builtin(kind))
            .chain(custom.iter().cloned().map(Ok))
            .collect::<Result<Vec<ApiResource>, Error>>()?;
        let streams: Vec<Events> = resources
            .iter()
            .enumerate()
            .map(|(i, resource)| {
                let projected = watch(client.clone(), resource).map_ok(move |event| project(event, keep));
                projected.map(move |e| (i, e)).boxed()
            })
            .collect();
        let names: Vec<&str> = resources.iter().map(|r| r.kind.as_str()).collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                mirror: Mirror::new(&names),
                error: None,
                ended: None,
            }),
            changed: Condvar::new(),
        });
        let stats = Arc::new(WatchStats::new(kinds));
        let (follower, counter) = (shared.clone(), stats.clone());
        std::thread::Builder::new()
            .name("kube-source".into())
            .spawn(move || runtime.block_on(follow(&follower, &counter, futures::stream::select_all(streams))))
            .map_err(Error::Thread)?;
        Ok(KubeSource { shared, stats, server })
    }

    /// The watchers' lists, relists, failures and events, per kind (for `/metrics`).
    pub fn stats(&self) -> Arc<WatchStats> {
        self.stats.clone()
    }

    fn unavailable(&self, msg: String) -> SourceError {
        SourceError::Unavailable {
            what: format!("Kubernetes API {}", self.server),
            msg,
        }
    }
}

impl Source for KubeSource {
    fn next(&mut self, after: u64) -> Result<Arc<Snapshot>, SourceError> {
        let mut state = self.shared.lock();
        loop {
            if state.mirror.revision() > after
                && let Some(snapshot) = state.mirror.snapshot()
            {
                return Ok(snapshot);
            }
            if let Some(msg) = state.ended.clone() {
                return Err(self.unavailable(msg));
            }
            if let Some(msg) = state.error.take() {
                return Err(self.unavailable(msg));
            }
            state = self.shared.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The mirror is changed one whole event at a time: a panic cannot leave half of one.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One kind's watch events, converted.
type Watch = BoxStream<'static, Result<Event<Object>, watcher::Error>>;

/// The API resource of a built-in kind.
fn builtin(kind: &str) -> Result<ApiResource, Error> {
    let resource = weft_model::kind::by_kind(kind).ok_or_else(|| Error::UnknownKind(kind.to_string()))?;
    Ok(ApiResource {
        group: resource.group.clone(),
        version: resource.version.clone(),
        api_version: resource.api_version(),
        kind: resource.kind.clone(),
        plural: resource.plural.clone(),
    })
}

/// The watcher of one kind. weft's typed kinds are decoded straight into their structs; any other kind goes
/// through its JSON.
fn watch(client: Client, resource: &ApiResource) -> Watch {
    match resource.kind.as_str() {
        "Namespace" => typed(client, |o: Namespace| Object::Namespace(Box::new(o))),
        "Node" => typed(client, |o: Node| Object::Node(Box::new(o))),
        "Pod" => typed(client, |o: Pod| Object::Pod(Box::new(o))),
        "Deployment" => typed(client, |o: Deployment| Object::Deployment(Box::new(o))),
        "Service" => typed(client, |o: Service| Object::Service(Box::new(o))),
        "Endpoints" => typed(client, |o: Endpoints| Object::Endpoints(Box::new(o))),
        "EndpointSlice" => typed(client, |o: EndpointSlice| Object::EndpointSlice(Box::new(o))),
        "NetworkPolicy" => typed(client, |o: NetworkPolicy| Object::NetworkPolicy(Box::new(o))),
        _ => dynamic(client, resource.clone()),
    }
}

fn typed<K>(client: Client, wrap: fn(K) -> Object) -> Watch
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(Api::<K>::all(client), watcher::Config::default())
        .default_backoff()
        .map_ok(move |event| convert(event, |o| Some(wrap(o))))
        .try_filter_map(futures::future::ok)
        .boxed()
}

/// A kind weft has no struct for, as `weft_model::Object::Other`.
fn dynamic(client: Client, api_resource: ApiResource) -> Watch {
    let api = Api::<DynamicObject>::all_with(client, &api_resource);
    let decode = move |o: DynamicObject| {
        // List items need not carry their kind.
        let mut value = serde_json::to_value(o).ok()?;
        value["apiVersion"] = api_resource.api_version.clone().into();
        value["kind"] = api_resource.kind.clone().into();
        weft_model::manifest::from_value(value)
            .inspect_err(|e| tracing::warn!(kind = %api_resource.kind, error = %e, "an object from the API does not decode; ignored"))
            .ok()
    };
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .map_ok(move |event| convert(event, &decode))
        .try_filter_map(futures::future::ok)
        .boxed()
}

/// The event with its object converted, or none when the object does not convert (it is then as if absent: a
/// relist without it removes an older version).
fn convert<K>(event: Event<K>, object: impl Fn(K) -> Option<Object>) -> Option<Event<Object>> {
    Some(match event {
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
        Event::InitApply(o) => Event::InitApply(object(o)?),
        Event::Apply(o) => Event::Apply(object(o)?),
        Event::Delete(o) => Event::Delete(object(o)?),
    })
}

/// The event with `keep` applied to its object.
fn project(event: Event<Object>, keep: fn(&mut Object)) -> Event<Object> {
    let kept = |mut object: Object| {
        keep(&mut object);
        object
    };
    match event {
        Event::InitApply(o) => Event::InitApply(kept(o)),
        Event::Apply(o) => Event::Apply(kept(o)),
        Event::Delete(o) => Event::Delete(kept(o)),
        other => other,
    }
}

/// Applies the watchers' events to the mirror until every watcher ends (they do not: the watcher retries), all
/// that are ready together under one lock, so that a burst of changes makes one snapshot, not one per event.
async fn follow(
    shared: &Shared,
    stats: &WatchStats,
    mut events: impl Stream<Item = (usize, Result<Event<Object>, watcher::Error>)> + Unpin,
) {
    while let Some(first) = events.next().await {
        let at = SystemTime::now();
        let mut batch = vec![first];
        while let Some(Some(more)) = events.next().now_or_never() {
            batch.push(more);
        }
        let mut state = shared.lock();
        for (kind, event) in batch {
            match event {
                Ok(event) => {
                    if stats.event(kind, &event) {
                        tracing::info!(kind = stats.kind(kind), "relisting");
                    }
                    state.mirror.apply(kind, event, at);
                }
                Err(e) => {
                    stats.error(kind);
                    // Reported by `next`, where the component logs it.
                    state.error = Some(format!("watching {}: {e}", stats.kind(kind)));
                }
            }
        }
        drop(state);
        shared.changed.notify_all();
    }
    shared.lock().ended = Some("every watch ended".into());
    shared.changed.notify_all();
}
