//! The supervisor: the lab's control plane in one process. It holds the store (`Shared`), answers the API
//! socket, runs the controllers and one pod runtime per node, and keeps a `weft agent` running in every node.

use crate::api::{ApplyReply, Outcome, Request, Response};
use crate::error::{Error, Result, io};
use crate::spec::{LabSpec, Paths};
use crate::store::{Applied, Store};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use weft_model::{Key, Object, Snapshot};

/// State shared by the API, the controllers and the pod runtimes.
pub struct Shared {
    pub spec: LabSpec,
    pub paths: Paths,
    store: Mutex<Store>,
    changed: Condvar,
    dirty: AtomicBool,
    stopping: AtomicBool,
}

impl Shared {
    pub fn new(spec: LabSpec, store: Store) -> Shared {
        Shared {
            paths: Paths::new(&spec.name),
            spec,
            store: Mutex::new(store),
            changed: Condvar::new(),
            dirty: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panicking writer leaves the store consistent (every change is one insert), so keep going.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the store; if it changed anything, wakes every watcher.
    pub fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut store = self.lock();
        let before = store.revision();
        let out = f(&mut store);
        if store.revision() != before {
            self.dirty.store(true, Ordering::Release);
            self.changed.notify_all();
        }
        out
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.lock().snapshot()
    }

    /// The first snapshot newer than `after`, or the current one when `timeout` passes first.
    pub fn wait_newer(&self, after: u64, timeout: Duration) -> Arc<Snapshot> {
        let deadline = Instant::now() + timeout;
        let mut store = self.lock();
        while store.revision() <= after && !self.stopping() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            store = self
                .changed
                .wait_timeout(store, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        store.snapshot()
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let _guard = self.lock();
        self.changed.notify_all();
    }

    /// Writes the store to disk if it changed since the last save.
    pub fn save_if_dirty(&self) -> Result<()> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.lock().save()?;
        }
        Ok(())
    }
}

/// Serves the API socket until the supervisor stops.
pub fn serve_api(shared: Arc<Shared>, listener: UnixListener) {
    for stream in listener.incoming() {
        if shared.stopping() {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || {
            let _ = handle_connection(&shared, stream);
        });
    }
}

fn handle_connection(shared: &Shared, stream: UnixStream) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                send(&mut writer, &Response::Error(format!("malformed request: {e}")))?;
                continue;
            }
        };
        if let Request::Watch { after } = request {
            return watch(shared, &mut writer, after);
        }
        let response = match answer(shared, request) {
            Ok(value) => Response::Ok(value),
            Err(e) => Response::Error(e.to_string()),
        };
        send(&mut writer, &response)?;
    }
    Ok(())
}

fn send(writer: &mut UnixStream, response: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line)
}

/// Streams snapshots until the client goes away or the supervisor stops.
fn watch(shared: &Shared, writer: &mut UnixStream, mut after: u64) -> std::io::Result<()> {
    while !shared.stopping() {
        let snap = shared.wait_newer(after, Duration::from_secs(30));
        if snap.revision <= after {
            continue;
        }
        after = snap.revision;
        let value = serde_json::to_value(snap.to_stored()).map_err(std::io::Error::other)?;
        send(writer, &Response::Ok(value))?;
    }
    Ok(())
}

fn answer(shared: &Shared, request: Request) -> Result<Value> {
    match request {
        Request::Apply { objects, namespace } => {
            let reply = apply(shared, objects, &namespace)?;
            serde_json::to_value(reply).map_err(|e| Error::Invalid(e.to_string()))
        }
        Request::Delete { keys } => {
            let outcomes = shared.write(|store| delete(store, &keys))?;
            serde_json::to_value(outcomes).map_err(|e| Error::Invalid(e.to_string()))
        }
        Request::Get { kind, namespace, name } => {
            let snap = shared.snapshot();
            let items: Vec<Value> = snap
                .objects()
                .filter(|o| kind.as_deref().is_none_or(|k| o.kind() == k))
                .filter(|o| namespace.is_none() || o.namespace().is_none() || o.namespace() == namespace.as_deref())
                .filter(|o| name.as_deref().is_none_or(|n| o.name() == n))
                .map(Object::to_value)
                .collect();
            if let (Some(kind), Some(name), true) = (&kind, &name, items.is_empty()) {
                return Err(Error::Invalid(format!("{kind} {name:?} not found")));
            }
            Ok(Value::Array(items))
        }
        Request::Kinds => {
            let snap = shared.snapshot();
            let mut kinds: Vec<&str> = snap.objects().map(Object::kind).collect();
            kinds.dedup();
            Ok(json!(kinds))
        }
        Request::Watch { .. } => Err(Error::Invalid("watch is answered by a stream".into())),
    }
}

/// Validates every object, checks every update against what is stored, then applies them all.
fn apply(shared: &Shared, values: Vec<Value>, namespace: &str) -> Result<ApplyReply> {
    let mut objects = Vec::new();
    for value in values {
        let mut object = weft_model::manifest::decode(value).map_err(|(what, msg)| match what {
            Some(w) => Error::Invalid(format!("{w}: {msg}")),
            None => Error::Invalid(msg),
        })?;
        object.default_namespace(namespace);
        objects.push(object);
    }
    shared.write(|store| {
        let mut reply = ApplyReply::default();
        let mut namespaces: Vec<String> = store
            .view()
            .namespaces()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        namespaces.extend(
            objects
                .iter()
                .filter(|o| o.kind() == "Namespace")
                .map(|o| o.name().to_string()),
        );
        for object in &objects {
            if let Some(ns) = object.namespace()
                && !namespaces.iter().any(|n| n == ns)
            {
                return Err(Error::Invalid(format!("{}: namespace {ns:?} not found", object.key())));
            }
            store.check_apply(object)?;
        }
        for object in objects {
            let key = object.key();
            if !crate::controller::acts_on(&key.kind) {
                reply.warnings.push(format!(
                    "{key}: stored, but nothing in the lab acts on kind {}",
                    key.kind
                ));
            }
            let action = match store.apply(object)? {
                Applied::Created => "created",
                Applied::Configured => "configured",
                Applied::Unchanged => "unchanged",
            };
            reply.outcomes.push(Outcome {
                key,
                action: action.into(),
            });
        }
        Ok(reply)
    })
}

fn delete(store: &mut Store, keys: &[Key]) -> Result<Vec<Outcome>> {
    if let Some(missing) = keys.iter().find(|k| store.get(k).is_none()) {
        return Err(Error::Invalid(format!("{missing} not found")));
    }
    let outcomes = keys
        .iter()
        .map(|key| {
            crate::controller::delete(store, key);
            Outcome {
                key: key.clone(),
                action: "deleted".into(),
            }
        })
        .collect();
    Ok(outcomes)
}

/// Binds the API socket (only root may connect).
pub fn listen(paths: &Paths) -> Result<UnixListener> {
    let socket = paths.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(io(format!("binding {}", socket.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("protecting {}", socket.display())))?;
    Ok(listener)
}
