//! The lab behind the Kubernetes API server: its store (writes admitted as kube-apiserver admits them) and its
//! pod runtime (logs, exec), and the server itself, started by the supervisor on 127.0.0.1 for the host and on
//! the control-plane address on the lab's wire for nodes and pods.

use crate::error::{Error, io};
use crate::sandbox::{Env, Sandbox};
use crate::supervisor::Shared;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use weft_apiserver::cluster::{Input, Start};
use weft_apiserver::{ApiError, Change, Cluster, Deletion};
use weft_model::{Key, Object, Snapshot, k8s_openapi};

/// The port the API listens on at the control-plane address, as kubeadm's API server does.
pub const CONTROL_PLANE_PORT: u16 = 6443;

pub struct LabCluster(pub Arc<Shared>);

impl LabCluster {
    /// One write to the store, answered only once it is on disk.
    fn write<T>(&self, f: impl FnOnce(&mut crate::store::Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        self.0
            .try_write(|store| Ok(f(store)))
            .map_err(|e| ApiError::internal(e.to_string()))?
    }

    /// Container `container`'s environment, made from the store as the pod's kubelet made it.
    fn container_env(&self, pod: &Pod, container: &str, ip: &str) -> Result<Vec<(String, String)>, String> {
        let spec = pod.spec.as_ref().ok_or("the pod has no spec")?;
        let c = (spec.init_containers.iter().flatten().chain(&spec.containers))
            .find(|c| c.name == container)
            .ok_or_else(|| format!("the pod has no container {container}"))?;
        let node_name = spec.node_name.as_deref().unwrap_or_default();
        let lab = &self.0.spec;
        let node = (lab.node_plans().into_iter())
            .find(|n| n.name == node_name)
            .ok_or_else(|| format!("the pod's node {node_name} is not one of the lab's"))?;
        let snap = self.0.snapshot();
        crate::kubelet::env::env(c, &crate::kubelet::env::Facts::new(pod, &node, ip, lab, &snap))
    }
}

/// A lab error as the API reports it.
fn api_error(e: Error, object: &Object) -> ApiError {
    let resource =
        weft_model::kind::by_kind(object.kind()).map_or_else(|| object.kind().to_lowercase(), |r| r.qualified());
    match e {
        Error::Exists(key) => ApiError::already_exists(&resource, &key.name),
        // weft_model's checks: one `field <path>: <reason>` line per error.
        Error::Invalid(msg) if msg.starts_with("field ") => ApiError::invalid(
            object.kind(),
            object.name(),
            &weft_apiserver::status::field_causes(&msg),
        ),
        Error::Invalid(msg) => {
            let (field, text) = match msg.split_once(": ") {
                // Admission names the field first (`spec.clusterIP: ...`) after the object's key.
                Some((head, rest)) if !head.contains(' ') && head.contains('.') => (head.to_string(), rest.to_string()),
                _ => (String::new(), msg),
            };
            ApiError::invalid(object.kind(), object.name(), &[(field, text)])
        }
        other => ApiError::internal(other.to_string()),
    }
}

/// `object` with the status of `from` (an update of the main resource never changes status, an update of the
/// status subresource changes nothing else).
fn with_status_of(object: &Object, from: &Object) -> Result<Object, ApiError> {
    let mut value = object.to_value();
    match from.to_value().get("status") {
        Some(status) => value["status"] = status.clone(),
        None => {
            if let Some(map) = value.as_object_mut() {
                map.remove("status");
            }
        }
    }
    weft_model::manifest::from_value(value).map_err(ApiError::internal)
}

fn has_finalizers(object: &Object) -> bool {
    object.meta().finalizers.as_ref().is_some_and(|f| !f.is_empty())
}

/// Marked for deletion and held by nothing any more (pods and namespaces end through their own lifecycle).
fn finalized(object: &Object) -> bool {
    object.meta().deletion_timestamp.is_some()
        && !has_finalizers(object)
        && !matches!(object.kind(), "Pod" | "Namespace")
}

impl Cluster for LabCluster {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.0.snapshot()
    }

    fn revisions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.revisions()
    }

    fn changes_since(&self, after: u64) -> Option<Vec<Change>> {
        self.0.changes_since(after)
    }

    fn create(&self, object: Object, dry_run: bool) -> Result<Arc<Object>, ApiError> {
        let key = object.key();
        self.write(|store| {
            if dry_run {
                return store
                    .admitted(object.clone())
                    .map(Arc::new)
                    .map_err(|e| api_error(e, &object));
            }
            store.create(object.clone()).map_err(|e| api_error(e, &object))?;
            store
                .view()
                .get_shared(&key)
                .cloned()
                .ok_or_else(|| ApiError::internal("the object vanished as it was created"))
        })
    }

    fn update(&self, object: Object, status: bool, dry_run: bool) -> Result<Arc<Object>, ApiError> {
        let key = object.key();
        self.write(|store| {
            let old = store
                .get(&key)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&key.kind.to_lowercase(), &key.name))?;
            let next = if status {
                let mut next = with_status_of(&old, &object)?;
                let meta = next.meta_mut();
                meta.resource_version = old.meta().resource_version.clone();
                next
            } else {
                let mut object = with_status_of(&object, &old)?;
                // Deletion marks are the server's: an update neither sets nor clears them.
                object.meta_mut().deletion_timestamp = old.meta().deletion_timestamp.clone();
                store.updated(&old, object).map_err(|e| api_error(e, &old))?
            };
            if dry_run {
                return Ok(Arc::new(next));
            }
            if finalized(&next) {
                // The last finalizer of an object marked for deletion is gone: so is the object.
                store.remove(&key);
                return Ok(Arc::new(next));
            }
            store.replace(next.clone());
            Ok(store
                .view()
                .get_shared(&key)
                .cloned()
                .filter(|_| !dry_run)
                .unwrap_or_else(|| Arc::new(next)))
        })
    }

    fn delete(&self, key: &Key, how: &Deletion, dry_run: bool) -> Result<Arc<Object>, ApiError> {
        self.write(|store| {
            let before = store
                .view()
                .get_shared(key)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&key.kind.to_lowercase(), &key.name))?;
            if dry_run {
                return Ok(before);
            }
            if has_finalizers(&before) && !matches!(key.kind.as_str(), "Pod" | "Namespace") {
                // Finalizers hold the object until their controllers remove them (cert-manager, Gateway API).
                store.update(key, |o| {
                    o.meta_mut().deletion_timestamp.get_or_insert_with(crate::store::now);
                });
            } else if key.kind == "Pod" && how.grace_period_seconds == Some(0) {
                // `--grace-period=0 --force`: gone from the API at once; the node's runtime stops what is left.
                store.remove(key);
            } else {
                if how.orphan {
                    crate::controller::orphan_dependents(store, key);
                }
                crate::controller::delete(store, key);
            }
            Ok(store.view().get_shared(key).cloned().unwrap_or(before))
        })
    }

    fn log_file(&self, pod: &Pod, container: &str, previous: bool) -> Option<PathBuf> {
        let uid = pod.metadata.uid.as_deref()?;
        // The runtime appends every run of a container to one file: there is no separate previous log.
        (!previous).then(|| self.0.paths.pod_dir(uid).join(format!("{container}.log")))
    }

    fn exec(
        &self,
        pod: &Pod,
        container: &str,
        argv: &[String],
        start: Start<'_>,
    ) -> std::io::Result<tokio::process::Child> {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()) else {
            return Err(std::io::Error::other(format!("pod {name} is not running yet")));
        };
        // The command gets the container's environment, as kubelet's exec does (PATH, the `kubernetes` Service's
        // variables, env and envFrom), not the supervisor's.
        let env = self.container_env(pod, container, ip).map_err(std::io::Error::other)?;
        Sandbox::of_pod(&self.0.paths, pod, Some(container))
            .spawn(argv, Env::Only(env), |command| {
                start(command).map_err(io(format!("starting {}", argv.join(" "))))
            })
            .map_err(std::io::Error::other)
    }

    fn attach_input(&self, pod: &Pod, container: &str) -> Option<std::io::Result<Input>> {
        self.0.inputs.attach(pod.metadata.uid.as_deref()?, container)
    }

    fn connect(&self, pod: &Pod, port: u16) -> std::io::Result<std::net::TcpStream> {
        // Only the pod's network matters here, which its containers share.
        let sandbox = Sandbox::of_pod(&self.0.paths, pod, None);
        let netns = weft_netlink::Netns::open(&sandbox.netns.to_string_lossy()).map_err(std::io::Error::other)?;
        // The socket keeps the namespace it was made in, whichever thread uses it later.
        netns
            .run(|| Ok(std::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port))))
            .map_err(std::io::Error::other)?
    }
}

/// The `kubernetes` Service every cluster has in `default` (the service CIDR's first address, port 443), and
/// its Endpoints at the control-plane address: in-cluster clients reach the API through it.
pub fn kubernetes_service(spec: &crate::LabSpec) -> Vec<Value> {
    let ip = spec.kubernetes_service_ip().to_string();
    let port = serde_json::json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": CONTROL_PLANE_PORT}]);
    vec![
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "ports": port},
        }),
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{
                "addresses": [{"ip": spec.control_plane_ip().to_string()}],
                "ports": [{"name": "https", "port": CONTROL_PLANE_PORT, "protocol": "TCP"}],
            }],
        }),
    ]
}
