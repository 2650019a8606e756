//! The weft column: `weft ingress` as it runs in a cluster, a process of its own following a Kubernetes API (the
//! lab's, served from this process's store: no lab network, no root) through kube-rs. The route is an Ingress of
//! class `weft` to a Service whose EndpointSlice holds the backend; its certificate is the default one, from a
//! kubernetes.io/tls Secret. A route change is an Ingress applied to the store (what `kubectl apply` does), which the controller sees through
//! its watch and turns into a new routing table, swapped in whole: the path every Ingress change takes.

use super::Proxy;
use super::load::Proc;
use super::peers::Setup;
use crate::bench::api::object;
use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use weft_lab::supervisor::Shared;

const NAMESPACE: &str = "bench";

fn ingress(change: usize) -> Value {
    let path = |path: String, kind: &str| {
        json!({"path": path, "pathType": kind,
            "backend": {"service": {"name": "backend", "port": {"number": 80}}}})
    };
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
    "metadata": {"name": "bench", "namespace": NAMESPACE},
    "spec": {"ingressClassName": "weft", "rules": [{"http": {"paths": [
        path("/".into(), "Prefix"),
        path(super::peers::extra_path(change), "Exact"),
    ]}}]}})
}

/// The objects of the route: the IngressClass, the backend's Service and EndpointSlice, the certificate's
/// Secret, the Ingress.
fn objects(setup: &Setup) -> Result<Vec<Value>> {
    let b64 = |path| -> Result<String> { Ok(base64::engine::general_purpose::STANDARD.encode(std::fs::read(path)?)) };
    Ok(vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "weft"},
            "spec": {"controller": "weft.dev/ingress"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend", "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": setup.backend}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "backend-1", "namespace": NAMESPACE,
                "labels": {"kubernetes.io/service-name": "backend"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": setup.backend, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls", "namespace": NAMESPACE},
            "type": "kubernetes.io/tls", "data": {"tls.crt": b64(&setup.cert)?, "tls.key": b64(&setup.key)?}}),
        ingress(0),
    ])
}

/// Stores the route's objects and serves the API; returns the kubeconfig to follow it with.
pub fn api(setup: &Setup, shared: &Arc<Shared>) -> Result<PathBuf> {
    shared.write(|store| -> Result<()> {
        for value in objects(setup)? {
            store.create(object(value)?)?;
        }
        Ok(())
    })?;
    let dir = setup.dir.join("api");
    std::fs::create_dir_all(&dir)?;
    crate::bench::api::serve(&dir, shared)
}

/// Starts `binary`'s `weft ingress` following the API of `kubeconfig`; a route change applies the Ingress anew.
pub fn start(name: &'static str, binary: &Path, kubeconfig: &Path, shared: Arc<Shared>, dir: &Path) -> Result<Proxy> {
    let (ports, status) = (super::ports()?, super::free_addr()?);
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(binary)
        .arg("ingress")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--http", &ports.http.to_string(), "--https", &ports.https.to_string()])
        .args(["--status", &status.to_string()])
        .args(["--default-ssl-certificate", &format!("{NAMESPACE}/tls")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("starting {} ingress", binary.display()))?;
    let change = move |n: usize| -> Result<()> {
        shared.write(|store| -> Result<()> {
            store.apply(object(ingress(n))?)?;
            Ok(())
        })
    };
    Ok(Proxy::new(name, Proc(child), ports, Box::new(change)))
}
