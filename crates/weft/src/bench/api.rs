//! `weft bench api`: the lab's Kubernetes API server with its store, in this process, over HTTPS on 127.0.0.1:
//! single-object writes at 10,000 Services with 5 watchers streaming, a Table list of 1,000 pods (what
//! `kubectl get pods` asks for) and the real kubectl's whole `get pods`, and the memory it takes. No lab network is built (no root needed).

use super::{ms, quantile};
use anyhow::{Context, Result, anyhow};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use weft_apiserver::pki::{Pki, ServerNames};
use weft_lab::kube_api::LabCluster;
use weft_lab::store::Store;
use weft_lab::supervisor::Shared;

#[derive(clap::Args)]
pub struct Args {
    /// Services in the store while writes are timed.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Watches of every Service kept streaming meanwhile.
    #[arg(long, default_value_t = 5)]
    watchers: usize,
    /// Writes timed (each kind).
    #[arg(long, default_value_t = 1_000)]
    writes: usize,
    /// Pods listed.
    #[arg(long, default_value_t = 1_000)]
    pods: usize,
}

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

pub fn run(args: Args) -> Result<()> {
    in_process("bench-api", |dir, shared| bench(dir, shared, &args))
}

/// Runs `bench` with a lab's store in this process (no lab network), in a directory of its own removed after.
pub(super) fn in_process(name: &str, bench: impl FnOnce(&std::path::Path, Arc<Shared>) -> Result<()>) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("weft-{name}-{}", weft_apiserver::names::new_uid()));
    std::fs::create_dir_all(&dir)?;
    let out = (|| {
        let spec: weft_lab::LabSpec = serde_json::from_value(json!({
            "name": name, "nodes": 1, "overlay": "host-gw", "clusterCidr": "10.244.0.0/16",
            "cniBin": "/nonexistent", "weftBin": "/nonexistent",
        }))?;
        let shared = Arc::new(Shared::new(spec, Store::open(dir.join("objects.json"))?));
        bench(&dir, shared)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Serves the API of `shared`'s store over HTTPS on 127.0.0.1 (a port of its own, 2 threads, until the process
/// ends) and returns the path of an admin kubeconfig for it, written in `dir` with the PKI.
pub(super) fn serve(dir: &std::path::Path, shared: &Arc<Shared>) -> Result<std::path::PathBuf> {
    let names = ServerNames::for_lab([127, 0, 0, 1].into(), [10, 96, 0, 1].into(), "cluster.local");
    let pki = Pki::load_or_create(&dir.join("pki"), "bench", &names).map_err(|e| anyhow!("{e}"))?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let api = weft_apiserver::Api::new(Arc::new(LabCluster(shared.clone())), None);
    let server = weft_apiserver::server::start(vec![listener], pki.server_config(), Arc::new(api), 2)?;
    let admin = pki.admin();
    let url = format!("https://{}", server.addresses[0]);
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        weft_apiserver::kubeconfig::standalone("bench", &url, pki.ca_pem(), &admin.cert_pem, &admin.key_pem)
            .map_err(|e| anyhow!("{e}"))?,
    )?;
    Ok(kubeconfig)
}

fn bench(dir: &std::path::Path, shared: Arc<Shared>, args: &Args) -> Result<()> {
    let started = Instant::now();
    shared.write(|store| -> Result<()> {
        for ns in ["default", "bench"] {
            store.create(object(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            )?)?;
        }
        for i in 0..args.services {
            store.create(object(service(i))?)?;
        }
        for i in 0..args.pods {
            store.create(object(pod(i))?)?;
        }
        Ok(())
    })?;
    println!(
        "store: {} Services and {} pods loaded in {:.0} ms",
        args.services,
        args.pods,
        ms(started.elapsed())
    );
    let names = ServerNames::for_lab([127, 0, 0, 1].into(), [10, 96, 0, 1].into(), "cluster.local");
    let pki = Pki::load_or_create(&dir.join("pki"), "bench", &names).map_err(|e| anyhow!("{e}"))?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let api = weft_apiserver::Api::new(Arc::new(LabCluster(shared.clone())), None);
    let server = weft_apiserver::server::start(vec![listener], pki.server_config(), Arc::new(api), 2)?;
    let address = server.addresses[0];
    let tls = client_tls(&pki)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut events = Vec::new();
        for _ in 0..args.watchers {
            let mut watch = connect(address, tls.clone()).await?;
            let rv = shared.snapshot().revision;
            let path = format!("/api/v1/services?watch=true&resourceVersion={rv}");
            let response = watch.send_request(request("GET", &path, "", Vec::new())?).await?;
            let counted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            events.push(counted.clone());
            tokio::spawn(async move {
                let mut body = response.into_body();
                while let Some(Ok(frame)) = body.frame().await {
                    if let Some(data) = frame.data_ref() {
                        let n = data.iter().filter(|b| **b == b'\n').count();
                        counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        let mut client = connect(address, tls.clone()).await?;
        let merge = "application/merge-patch+json";
        let mut patches = Vec::new();
        for i in 0..args.writes {
            let path = format!(
                "/api/v1/namespaces/default/services/svc-{}",
                i * 7 % args.services.max(1)
            );
            let body = serde_json::to_vec(&json!({"metadata": {"labels": {"bench": i.to_string()}}}))?;
            patches.push(timed(&mut client, request("PATCH", &path, merge, body)?, 200).await?);
        }
        report(
            &format!("PATCH a Service's labels at {} Services", args.services),
            &mut patches,
        );
        let mut creates = Vec::new();
        for i in 0..args.writes {
            let body = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}")}, "data": {"k": "v"}}))?;
            let path = "/api/v1/namespaces/default/configmaps";
            creates.push(timed(&mut client, request("POST", path, "application/json", body)?, 201).await?);
        }
        report(
            &format!("POST a ConfigMap at {} objects", args.services + args.pods),
            &mut creates,
        );
        let seen: Vec<usize> = events
            .iter()
            .map(|e| e.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        println!(
            "watch events received by each of {} watchers: {seen:?} (of {})",
            args.watchers, args.writes
        );
        let mut lists = Vec::new();
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
        for _ in 0..50 {
            let mut req = request("GET", "/api/v1/namespaces/bench/pods?limit=500", "", Vec::new())?;
            req.headers_mut().insert(hyper::header::ACCEPT, table.parse()?);
            lists.push(timed(&mut client, req, 200).await?);
        }
        report(
            &format!("GET {} pods as a Table in pages of 500 (first page)", args.pods),
            &mut lists,
        );
        anyhow::Ok(())
    })?;
    let memory = super::peak_rss_mb();
    kubectl_get_pods(dir, &pki, address, args.pods)?;
    println!("memory: peak RSS of the server with its store and this client {memory:.1} MB");
    println!("anchor: kube-apiserver's SLO for mutating calls is p99 <= 1 s");
    Ok(())
}

/// What a user waits for: the real `kubectl get pods` of the 1,000 pods, process start to exit, 10 times,
/// interleaved with the same command in an empty namespace: kubectl's own start-up, version dispatch and discovery
/// (tens of ms of a 60 MB Go binary on this machine) are the floor no server can go under, and the difference is
/// what the 1,000 pods cost. Skipped when no kubectl is installed.
fn kubectl_get_pods(dir: &std::path::Path, pki: &Pki, address: std::net::SocketAddr, pods: usize) -> Result<()> {
    let admin = pki.admin();
    let config = weft_apiserver::kubeconfig::standalone(
        "bench",
        &format!("https://{address}"),
        pki.ca_pem(),
        &admin.cert_pem,
        &admin.key_pem,
    )
    .map_err(|e| anyhow!("{e}"))?;
    let path = dir.join("kubeconfig");
    std::fs::write(&path, config)?;
    let get_pods = |namespace: &str, want: usize| -> Result<Option<f64>> {
        let started = Instant::now();
        let Ok(out) = std::process::Command::new("kubectl")
            .args(["get", "pods", "-n", namespace, "--no-headers"])
            .env("KUBECONFIG", &path)
            .output()
        else {
            return Ok(None);
        };
        let took = ms(started.elapsed());
        let rows = out.stdout.iter().filter(|b| **b == b'\n').count();
        if !out.status.success() || rows != want {
            return Err(anyhow!(
                "kubectl get pods -n {namespace}: {rows} rows of {want}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Some(took))
    };
    let (mut full, mut empty) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let (Some(a), Some(b)) = (get_pods("bench", pods)?, get_pods("empty", 0)?) else {
            println!("kubectl get pods: skipped (no kubectl)");
            return Ok(());
        };
        full.push(a);
        empty.push(b);
    }
    let mut cost: Vec<f64> = full.iter().zip(&empty).map(|(a, b)| a - b).collect();
    report(&format!("kubectl get pods of {pods} pods, whole command"), &mut full);
    report("kubectl get pods in an empty namespace (kubectl's floor)", &mut empty);
    report(
        &format!("kubectl get pods: what the {pods} pods add (pairwise)"),
        &mut cost,
    );
    Ok(())
}

pub(super) fn object(value: Value) -> Result<weft_model::Object> {
    weft_model::manifest::from_value(value).map_err(|e| anyhow!(e))
}

fn service(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}"), "namespace": "default"},
        "spec": {"selector": {"app": format!("app-{i}")}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

fn pod(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("pod-{i}"), "namespace": "bench",
        "labels": {"app": "bench"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]},
        "status": {"phase": "Running", "podIP": format!("10.244.{}.{}", i / 250, i % 250 + 2),
            "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "image": "nginx", "imageID": "",
                "state": {"running": {"startedAt": "2026-12-03T00:00:00Z"}}}]}})
}

fn report(what: &str, xs: &mut [f64]) {
    xs.sort_by(f64::total_cmp);
    println!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        quantile(xs, 0.5),
        quantile(xs, 0.99),
        xs.last().copied().unwrap_or(f64::NAN),
        xs.len()
    );
}

/// The admin's client TLS configuration, trusting the lab's CA.
fn client_tls(pki: &Pki) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile(pki.ca_pem())? {
        roots.add(cert)?;
    }
    let admin = pki.admin();
    let chain = rustls_pemfile(&admin.cert_pem)?;
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(admin.key_pem.as_bytes())
        .map_err(|e| anyhow!("the admin key: {e}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn rustls_pemfile(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("a certificate: {e}"))
}

/// One HTTP/2 connection to the server.
async fn connect(address: std::net::SocketAddr, tls: Arc<rustls::ClientConfig>) -> Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(conn);
    Ok(sender)
}

fn request(method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Result<hyper::Request<Full<Bytes>>> {
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(format!("https://127.0.0.1{path}"));
    if !content_type.is_empty() {
        builder = builder.header(hyper::header::CONTENT_TYPE, content_type);
    }
    builder.body(Full::new(Bytes::from(body))).context("building a request")
}

/// Milliseconds from sending `req` to having read its whole answer, which must have status `want`.
async fn timed(client: &mut Sender, req: hyper::Request<Full<Bytes>>, want: u16) -> Result<f64> {
    let started = Instant::now();
    let response = client.send_request(req).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    let took = ms(started.elapsed());
    if status != want {
        return Err(anyhow!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(took)
}
