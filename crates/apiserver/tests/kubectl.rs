//! The real kubectl reads the kubeconfigs a lab writes and authenticates with the lab's certificates. Skipped,
//! saying so, where kubectl is not installed.

mod common;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

use common::TempDir;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use weft_apiserver::kubeconfig::{merge_into, standalone};
use weft_apiserver::pki::{Pki, ServerNames, identity};

const KUBECTL: &str = "/usr/bin/kubectl";

fn have_kubectl() -> bool {
    let present = Path::new(KUBECTL).exists();
    if !present {
        eprintln!("SKIPPED: {KUBECTL} is not installed");
    }
    present
}

/// Runs kubectl with `args` and a throwaway home (no user config is read or written), returning its stdout.
fn kubectl(home: &Path, args: &[&str]) -> String {
    let out = Command::new(KUBECTL)
        .args(args)
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kubectl output is UTF-8")
}

fn lab_pki(dir: &TempDir) -> Pki {
    let names = ServerNames::for_lab(
        IpAddr::from([172, 18, 0, 2]),
        IpAddr::from([10, 96, 0, 1]),
        "cluster.local",
    );
    Pki::load_or_create(&dir.path().join("pki"), "test", &names).expect("lab PKI")
}

#[test]
fn kubectl_reads_a_standalone_kubeconfig() {
    if !have_kubectl() {
        return;
    }
    let dir = TempDir::new("kubectl-standalone");
    let pki = lab_pki(&dir);
    let admin = pki.admin();
    let path = dir.path().join("kubeconfig");
    let yaml = standalone(
        "weft-test",
        "https://127.0.0.1:6443",
        pki.ca_pem(),
        &admin.cert_pem,
        &admin.key_pem,
    )
    .unwrap();
    std::fs::write(&path, yaml).unwrap();
    let file = path.to_str().unwrap();
    let view = |jsonpath: &str| {
        kubectl(
            dir.path(),
            &[
                "--kubeconfig",
                file,
                "config",
                "view",
                "--minify",
                "--raw",
                "-o",
                &format!("jsonpath={jsonpath}"),
            ],
        )
    };
    assert_eq!(view("{.clusters[0].cluster.server}"), "https://127.0.0.1:6443");
    assert_eq!(view("{.contexts[0].context.user}"), "weft-test");
    assert_eq!(
        kubectl(dir.path(), &["--kubeconfig", file, "config", "current-context"]).trim(),
        "weft-test"
    );
}

#[test]
fn kubectl_lists_merged_contexts() {
    if !have_kubectl() {
        return;
    }
    let dir = TempDir::new("kubectl-merged");
    let pki = lab_pki(&dir);
    let admin = pki.admin();
    let path = dir.path().join(".kube").join("config");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod.example:6443\n\
         users:\n- name: prod\n  user:\n    token: secret\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    \
         user: prod\ncurrent-context: prod\n",
    )
    .unwrap();
    for (name, port) in [("weft-a", 6443), ("weft-b", 6444)] {
        let server = format!("https://127.0.0.1:{port}");
        merge_into(&path, name, &server, pki.ca_pem(), &admin.cert_pem, &admin.key_pem).unwrap();
    }
    let file = path.to_str().unwrap();
    let contexts = kubectl(
        dir.path(),
        &["--kubeconfig", file, "config", "get-contexts", "-o", "name"],
    );
    let mut contexts: Vec<&str> = contexts.lines().collect();
    contexts.sort_unstable();
    assert_eq!(contexts, ["prod", "weft-a", "weft-b"]);
    assert_eq!(
        kubectl(dir.path(), &["--kubeconfig", file, "config", "current-context"]).trim(),
        "weft-b"
    );
    // kubectl finds the merged file where kind would put it, without being told.
    assert_eq!(kubectl(dir.path(), &["config", "current-context"]).trim(), "weft-b");
}

/// Serves HTTPS from the lab's server config on 127.0.0.1, answering every request with the caller's user name
/// and the negotiated protocol.
async fn whoami_server(pki: &Pki) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(pki.server_config());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let (_, conn) = tls.get_ref();
                let name = conn
                    .peer_certificates()
                    .and_then(identity)
                    .map_or("anonymous".into(), |u| u.name);
                let alpn = String::from_utf8_lossy(conn.alpn_protocol().unwrap_or(b"none")).into_owned();
                let answer = Bytes::from(format!("{name} {alpn}"));
                let service = service_fn(move |_: Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(answer))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_authenticates_with_the_lab_admin_certificate_over_h2() {
    if !have_kubectl() {
        return;
    }
    let dir = TempDir::new("kubectl-tls");
    let pki = lab_pki(&dir);
    let addr = whoami_server(&pki).await;
    let admin = pki.admin();
    let path = dir.path().join("kubeconfig");
    let server = format!("https://{addr}");
    std::fs::write(
        &path,
        standalone("weft-test", &server, pki.ca_pem(), &admin.cert_pem, &admin.key_pem).unwrap(),
    )
    .unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        let file = path.to_str().unwrap();
        kubectl(
            dir.path(),
            &["--kubeconfig", file, "--request-timeout=20s", "get", "--raw", "/whoami"],
        )
    })
    .await
    .unwrap();
    assert_eq!(answer.trim(), "kubernetes-admin h2");
}
