//! Watches: one JSON event per line (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`) on a chunked response,
//! from the store's change log, so every revision is one event and a watcher resumes from any resourceVersion
//! the log still holds (older ones get `410 Expired`, and kube-rs relists).

use crate::api::{Api, Call, selectors};
use crate::body::{Body, stream};
use crate::cluster::Change;
use crate::request::Target;
use crate::selector::{Fields, Labels};
use crate::status::ApiError;
use crate::table::IncludeObject;
use hyper::Response;
use hyper::body::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc::Sender;
use weft_model::Object;

/// kube-apiserver ends watches after a random 30–60 minutes; one fixed hour here.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// How often a bookmark is sent to a watcher that allows them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

struct Filter {
    kind: String,
    api_version: String,
    namespace: Option<String>,
    labels: Labels,
    fields: Fields,
}

impl Filter {
    fn matches(&self, o: &Object) -> bool {
        o.kind() == self.kind
            && (self.namespace.is_none() || o.namespace() == self.namespace.as_deref())
            && self.labels.matches(o.labels())
            && self.fields.matches(o)
    }
}

pub fn watch(api: &Api, call: &Call, target: &Target) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(call, &target.resource.kind)?;
    let table = call.table()?;
    let filter = Filter {
        kind: target.resource.kind.clone(),
        api_version: target.resource.api_version(),
        namespace: target.namespace.clone(),
        labels,
        fields,
    };
    let filter = match &target.name {
        // A watch on one object is a watch on its collection with metadata.name selected (as kubectl does it).
        Some(name) => Filter {
            fields: Fields::parse(&format!("metadata.name={name}"), &target.resource.kind)
                .map_err(ApiError::bad_request)?,
            ..filter
        },
        None => filter,
    };
    let from = match call.query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("resourceVersion: invalid value {rv:?}")))?,
        ),
    };
    let timeout = match call.query.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::bad_request(format!("timeoutSeconds: invalid value {t:?}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let options = Options {
        bookmarks: call.query.get("allowWatchBookmarks").is_some_and(|v| v == "true"),
        initial_events: call.query.get("sendInitialEvents").is_some_and(|v| v == "true"),
        table,
        columns: crate::crd::printer_columns(&api.cluster.snapshot(), &target.resource),
    };
    let (tx, response) = stream("application/json");
    let cluster = api.cluster.clone();
    tokio::spawn(async move {
        let _ = run(cluster, filter, from, timeout, options, tx).await;
    });
    Ok(response)
}

struct Options {
    bookmarks: bool,
    initial_events: bool,
    table: Option<IncludeObject>,
    columns: Option<Vec<crate::table::PrinterColumn>>,
}

/// Why a watch ended early: the client went away.
struct Gone;

struct Sink {
    tx: Sender<Bytes>,
    table: Option<IncludeObject>,
    /// A custom resource's columns (see `crd::printer_columns`).
    columns: Option<Vec<crate::table::PrinterColumn>>,
    /// Column definitions go with the first Table event only.
    headers: bool,
}

impl Sink {
    async fn event(&mut self, kind: &str, object: Value) -> Result<(), Gone> {
        let Some(include) = self.table else {
            return self.send(&json!({"type": kind, "object": object})).await;
        };
        let table = crate::table::table(
            object["kind"].as_str().unwrap_or_default(),
            [&object],
            include,
            self.columns.as_deref(),
            self.headers,
            SystemTime::now(),
            &json!({"resourceVersion": object.pointer("/metadata/resourceVersion")}),
        );
        self.headers = false;
        // The event type is one of ADDED, MODIFIED, DELETED: nothing in it needs escaping.
        let mut line = format!(r#"{{"type":"{kind}","object":"#).into_bytes();
        line.extend_from_slice(&table);
        line.extend_from_slice(b"}\n");
        self.tx.send(Bytes::from(line)).await.map_err(|_| Gone)
    }

    async fn send(&self, event: &Value) -> Result<(), Gone> {
        let mut line = serde_json::to_vec(event).map_err(|_| Gone)?;
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.map_err(|_| Gone)
    }

    async fn bookmark(&self, filter: &Filter, revision: u64, initial_end: bool) -> Result<(), Gone> {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": filter.kind, "apiVersion": filter.api_version, "metadata": meta});
        self.send(&json!({"type": "BOOKMARK", "object": object})).await
    }

    async fn expired(&self, from: u64) -> Result<(), Gone> {
        let status = ApiError::gone(format!("too old resource version: {from}")).status();
        self.send(&json!({"type": "ERROR", "object": status})).await
    }
}

async fn run(
    cluster: Arc<dyn crate::cluster::Cluster>,
    filter: Filter,
    from: Option<u64>,
    timeout: Duration,
    options: Options,
    tx: Sender<Bytes>,
) -> Result<(), Gone> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut revisions = cluster.revisions();
    revisions.borrow_and_update();
    let mut sink = Sink {
        tx,
        table: options.table,
        columns: options.columns,
        headers: true,
    };
    let mut last = match from {
        Some(rv) => rv,
        None => {
            // No version: the current state as ADDED events, then what changes after it.
            let snap = cluster.snapshot();
            for o in snap.of_kind(&filter.kind).filter(|o| filter.matches(o)) {
                sink.event("ADDED", o.to_value()).await?;
            }
            if options.initial_events && options.bookmarks {
                sink.bookmark(&filter, snap.revision, true).await?;
            }
            snap.revision
        }
    };
    let mut next_bookmark = tokio::time::Instant::now() + BOOKMARK_EVERY;
    loop {
        let Some(changes) = cluster.changes_since(last) else {
            return sink.expired(last).await;
        };
        for change in &changes {
            if let Some((kind, object)) = event(&filter, change) {
                sink.event(kind, object).await?;
            }
            last = change.revision;
        }
        tokio::select! {
            changed = revisions.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                revisions.borrow_and_update();
            }
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
            _ = tokio::time::sleep_until(next_bookmark) => {
                if options.bookmarks {
                    sink.bookmark(&filter, last, false).await?;
                }
                next_bookmark = tokio::time::Instant::now() + BOOKMARK_EVERY;
            }
            _ = sink.tx.closed() => return Err(Gone),
        }
    }
}

/// The event a watcher with `filter` sees for `change`, if any: an object that starts or stops matching the
/// selectors is ADDED or DELETED, as kube-apiserver's watch cache reports it; a DELETED event carries the
/// object's last state at the revision of the change.
fn event(filter: &Filter, change: &Change) -> Option<(&'static str, Value)> {
    let was = change.old.as_deref().filter(|o| filter.matches(o));
    let is = change.new.as_deref().filter(|o| filter.matches(o));
    match (was, is) {
        (None, None) => None,
        (None, Some(new)) => Some(("ADDED", new.to_value())),
        (Some(_), Some(new)) => Some(("MODIFIED", new.to_value())),
        (Some(old), None) => {
            let mut value = old.to_value();
            value["metadata"]["resourceVersion"] = json!(change.revision.to_string());
            Some(("DELETED", value))
        }
    }
}
