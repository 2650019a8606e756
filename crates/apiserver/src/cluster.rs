//! What the API server serves from: the lab's store and pod runtime, behind one trait so that the HTTP side
//! knows nothing of how objects are kept or pods are run.

use crate::status::ApiError;
use k8s_openapi::api::core::v1::Pod;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use weft_model::{Key, Object, Snapshot, k8s_openapi};

/// What `Cluster::exec` calls with the command once it is inside the pod's sandbox.
pub type Start<'a> = Box<dyn FnOnce(Command) -> std::io::Result<tokio::process::Child> + Send + 'a>;

/// One change of the store: the object before (none when created) and after (none when deleted) revision
/// `revision`. The objects are shared with the snapshots that hold them.
#[derive(Clone, Debug)]
pub struct Change {
    pub revision: u64,
    pub old: Option<Arc<Object>>,
    pub new: Option<Arc<Object>>,
}

impl Change {
    pub fn key(&self) -> Option<Key> {
        self.new.as_ref().or(self.old.as_ref()).map(|o| o.key())
    }
}

/// How a deletion goes (`DeleteOptions`).
#[derive(Clone, Debug, Default)]
pub struct Deletion {
    /// `Orphan` keeps what the object owns; `Background` (default) and `Foreground` delete it too.
    pub orphan: bool,
    /// None: the object's own grace period (pods).
    pub grace_period_seconds: Option<i64>,
    /// The object must still have this uid / resourceVersion (preconditions).
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// A running container's input end, for one attach session.
#[derive(Debug)]
pub struct Input {
    /// The writing end of its stdin pipe, or the master side of its terminal.
    pub writer: std::fs::File,
    /// Whether `writer` is a terminal (which also takes window sizes).
    pub terminal: bool,
}

pub trait Cluster: Send + Sync + 'static {
    /// The current state.
    fn snapshot(&self) -> Arc<Snapshot>;

    /// Sees every new revision of the store.
    fn revisions(&self) -> tokio::sync::watch::Receiver<u64>;

    /// The changes after revision `after`, oldest first, or None when the store no longer remembers that far back.
    fn changes_since(&self, after: u64) -> Option<Vec<Change>>;

    /// Stores a new object (admitted and stamped as the API server does), or only checks that it could be.
    fn create(&self, object: Object, dry_run: bool) -> Result<Arc<Object>, ApiError>;

    /// Replaces an object: its spec and metadata when `status` is false, else only its status.
    fn update(&self, object: Object, status: bool, dry_run: bool) -> Result<Arc<Object>, ApiError>;

    /// Deletes an object; answers with it as it is after the call (marked for deletion, or its last state).
    fn delete(&self, key: &Key, how: &Deletion, dry_run: bool) -> Result<Arc<Object>, ApiError>;

    /// Where a container's output is written (`previous`: of its last run).
    fn log_file(&self, pod: &Pod, container: &str, previous: bool) -> Option<PathBuf>;

    /// Runs `argv` inside the pod's sandbox with container `container`'s environment: `start` completes the
    /// command (its streams) and spawns it, on a thread that has entered the sandbox (blocking until it did).
    fn exec(
        &self,
        pod: &Pod,
        container: &str,
        argv: &[String],
        start: Start<'_>,
    ) -> std::io::Result<tokio::process::Child>;

    /// What `attach -i` writes to in container `container` of a running pod: its stdin, or its terminal. None
    /// when it keeps no stdin open (started without `stdin`/`tty`, or a `stdinOnce` stdin another session took).
    fn attach_input(&self, pod: &Pod, container: &str) -> Option<std::io::Result<Input>>;

    /// A TCP connection to `port` on the pod's loopback, opened inside its network namespace (as kubelet's
    /// port-forward does). Blocking.
    fn connect(&self, pod: &Pod, port: u16) -> std::io::Result<std::net::TcpStream>;
}
