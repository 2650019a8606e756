//! weft-acme against a real ACME server: Debian's pebble on loopback (free ports), its DNS (pebble-challtestsrv)
//! answering every name with 127.0.0.1, where each test's HTTP-01 responder listens on pebble's `httpPort`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_acme::pebble::{Pebble, SERVER_ENV};
use weft_acme::{Backoff, Binding, Error, Http01Solver, Registration, Server, Trust};

/// pebble and its DNS, killed and their files removed on drop.
struct Running {
    pebble: Pebble,
    children: Vec<Child>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.pebble.dir);
    }
}

impl Running {
    fn server(&self) -> Server {
        let ca = std::fs::read(self.pebble.ca_file()).unwrap();
        Server::new(self.pebble.directory_url(), Trust::Bundle(ca))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.pebble.dir.join("pebble.log")).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts pebble validating HTTP-01 on `http_port` of 127.0.0.1, and waits until it and its DNS accept.
fn start(tag: &str, http_port: u16, eab: Vec<(String, Vec<u8>)>) -> Running {
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let dir = std::env::temp_dir().join(format!("weft-acme-{}-{tag}", std::process::id()));
    let pebble = Pebble {
        dir: dir.clone(),
        listen: at(free_port()),
        management: at(free_port()),
        http_port,
        dns: at(free_port()),
        dns_management: at(free_port()),
        answer: [127, 0, 0, 1].into(),
        eab,
    };
    pebble.write_files().unwrap();
    let mut running = Running {
        pebble,
        children: Vec::new(),
    };
    let spawn = |argv: Vec<String>, log: &str, env: &[(&str, &str)]| {
        let log = std::fs::File::create(dir.join(log)).unwrap();
        Command::new(&argv[0])
            .args(&argv[1..])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble is installed (scripts/deps.sh)")
    };
    running.children.push(spawn(running.pebble.dns_argv(), "dns.log", &[]));
    running
        .children
        .push(spawn(running.pebble.server_argv(), "pebble.log", SERVER_ENV));
    let deadline = Instant::now() + Duration::from_secs(20);
    for addr in [running.pebble.dns, running.pebble.listen, running.pebble.management] {
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "pebble did not listen on {addr}:\n{}",
                running.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    running
}

/// An HTTP-01 responder: serves the key authorizations presented to it, 404 for anything else.
#[derive(Clone, Default)]
struct Responder {
    tokens: Arc<Mutex<HashMap<String, String>>>,
    /// Serves this instead of the right key authorization (a broken solver).
    wrong: bool,
}

impl Responder {
    async fn listen(&self) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tokens = self.tokens.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tokens = tokens.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let token = req
                            .uri()
                            .path()
                            .strip_prefix("/.well-known/acme-challenge/")
                            .map(String::from);
                        let body = token.and_then(|t| tokens.lock().unwrap().get(&t).cloned());
                        async move {
                            let status = if body.is_some() { 200 } else { 404 };
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        port
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Http01Solver for Responder {
    async fn present(&self, _identifier: &str, token: &str, key_authorization: &str) -> Result<(), BoxError> {
        let value = if self.wrong {
            "not-the-key-authorization".into()
        } else {
            key_authorization.to_string()
        };
        self.tokens.lock().unwrap().insert(token.to_string(), value);
        Ok(())
    }

    async fn clean_up(&self, _identifier: &str, token: &str) -> Result<(), BoxError> {
        self.tokens.lock().unwrap().remove(token);
        Ok(())
    }
}

fn csr(names: &[&str]) -> (Vec<u8>, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    (params.serialize_request(&key).unwrap().der().to_vec(), key)
}

/// Verifies `chain_pem` for `name` as a TLS client trusting only `root_pem` would.
fn verify(chain_pem: &str, root_pem: &str, name: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let chain: Vec<CertificateDer> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    let name = ServerName::try_from(name.to_string()).unwrap();
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_a_certificate_answering_http01() {
    let responder = Responder::default();
    let pebble = start("order", responder.listen().await, Vec::new());
    let registration = Registration {
        email: Some("admin@weft.test".into()),
        binding: None,
    };
    let (account, key) = weft_acme::register(&pebble.server(), &registration).await.unwrap();
    assert!(key.0.starts_with("-----BEGIN PRIVATE KEY-----\n"), "PKCS#8 PEM");
    assert!(!key.0.contains('\r'), "LF line ends");
    let (csr, _key) = csr(&["blue.weft.test", "green.weft.test"]);
    let issued = weft_acme::issue(&account, &csr, &responder, &Backoff::default())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", pebble.log()));
    assert!(
        issued
            .order_url
            .starts_with(&format!("https://{}/", pebble.pebble.listen))
    );
    let root = pebble.pebble.root_pem().await.unwrap();
    for name in ["blue.weft.test", "green.weft.test"] {
        verify(&issued.chain_pem, &root, name).unwrap();
    }
    assert!(
        verify(&issued.chain_pem, &root, "red.weft.test").is_err(),
        "only the CSR's names"
    );
    assert!(responder.tokens.lock().unwrap().is_empty(), "tokens cleaned up");
    assert!(
        pebble.log().contains("blue.weft.test"),
        "pebble validated the names itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_key_finds_its_account_again() {
    let pebble = start("reload", free_port(), Vec::new());
    let server = pebble.server();
    let (account, key) = weft_acme::register(&server, &Registration::default()).await.unwrap();
    let again = weft_acme::load(&server, &key, Some("ops@weft.test"), false)
        .await
        .unwrap();
    assert_eq!(again.uri, account.uri);
    let unknown = weft_acme::load(&server, &weft_acme_key(), None, false)
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, Error::Server { ref kind, .. } if kind.ends_with(":accountDoesNotExist")),
        "{unknown}"
    );
    let created = weft_acme::load(&server, &weft_acme_key(), None, true).await.unwrap();
    assert_ne!(created.uri, account.uri);
    let garbage = weft_acme::load(&server, &weft_acme::AccountKey("nope".into()), None, true)
        .await
        .unwrap_err();
    assert_eq!(garbage.issuer_reason(), "InvalidConfig");
}

/// A P-256 key no account has used yet.
fn weft_acme_key() -> weft_acme::AccountKey {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    weft_acme::AccountKey(key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_authorization_fails_the_challenge() {
    let responder = Responder {
        wrong: true,
        ..Default::default()
    };
    let pebble = start("wrong", responder.listen().await, Vec::new());
    let (account, _) = weft_acme::register(&pebble.server(), &Registration::default())
        .await
        .unwrap();
    let (csr, _key) = csr(&["broken.weft.test"]);
    let err = weft_acme::issue(&account, &csr, &responder, &Backoff::default())
        .await
        .unwrap_err();
    let Error::ChallengeFailed { identifier, detail } = &err else {
        panic!("{err}")
    };
    assert_eq!(identifier, "broken.weft.test");
    assert!(
        detail.contains("not-the-key-authorization") || detail.contains("unauthorized"),
        "{detail}"
    );
    assert!(!err.is_retryable(), "a failed challenge needs a new order");
    assert_eq!((err.request_reason(), err.order_state()), ("Failed", Some("invalid")));
    assert!(
        responder.tokens.lock().unwrap().is_empty(),
        "tokens cleaned up after a failure too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_untrusted_server_is_told_apart() {
    let pebble = start("trust", free_port(), Vec::new());
    let closed = Server::new(
        format!("https://127.0.0.1:{}/dir", free_port()),
        Trust::Bundle(std::fs::read(pebble.pebble.ca_file()).unwrap()),
    );
    let err = weft_acme::register(&closed, &Registration::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.issuer_reason(), "ErrRegisterACMEAccount");
    assert_eq!((err.request_reason(), err.order_state()), ("Pending", None));
    // The system's roots do not know pebble's CA; skipTLSVerify trusts anything.
    let system = Server::new(pebble.pebble.directory_url(), Trust::System);
    let err = weft_acme::register(&system, &Registration::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unreachable { ref detail, .. } if detail.contains("certificate")),
        "{err}"
    );
    let insecure = Server::new(pebble.pebble.directory_url(), Trust::Insecure);
    weft_acme::register(&insecure, &Registration::default()).await.unwrap();
    let bad_bundle = Server::new(pebble.pebble.directory_url(), Trust::Bundle(b"no PEM here".to_vec()));
    let err = weft_acme::register(&bad_bundle, &Registration::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { what: "caBundle", .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding_is_required_and_accepted() {
    let hmac = b"a secret the CA handed out, 32 b".to_vec();
    let pebble = start("eab", free_port(), vec![("kid-1".into(), hmac.clone())]);
    let server = pebble.server();
    let err = weft_acme::register(&server, &Registration::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Server { ref kind, .. } if kind.ends_with(":externalAccountRequired")),
        "{err}"
    );
    let wrong = Binding {
        key_id: "kid-1".into(),
        hmac_key: b"another secret".to_vec(),
    };
    let registration = |binding| Registration {
        email: None,
        binding: Some(binding),
    };
    assert!(weft_acme::register(&server, &registration(wrong)).await.is_err());
    let right = Binding {
        key_id: "kid-1".into(),
        hmac_key: hmac,
    };
    weft_acme::register(&server, &registration(right)).await.unwrap();
}
