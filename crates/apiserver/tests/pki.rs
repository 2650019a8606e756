//! The lab PKI: certificates that chain to the lab CA, TLS that authenticates by client certificate but lets
//! anonymous clients through, and files that survive a restart.

mod common;

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::TempDir;
use rustls::ClientConfig;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use weft_apiserver::pki::{Credential, Pki, PkiError, ServerNames, UserInfo, identity};

fn names(control_plane: [u8; 4]) -> ServerNames {
    ServerNames::for_lab(
        IpAddr::from(control_plane),
        IpAddr::from([10, 96, 0, 1]),
        "cluster.local",
    )
}

fn lab_pki(dir: &TempDir) -> Pki {
    Pki::load_or_create(&dir.path().join("pki"), "test", &names([172, 18, 0, 2])).expect("lab PKI")
}

/// A client trusting `pki`'s CA, presenting `credential` if given, offering h2 and http/1.1.
fn client_config(pki: &Pki, credential: Option<&Credential>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match credential {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// What the server saw of one connection: the client's identity and the negotiated protocol.
type Seen = (Option<UserInfo>, Option<Vec<u8>>);

/// One TLS connection from `client` to a server made from `pki.server_config()` on 127.0.0.1, the client
/// checking the server's certificate for `server_name`. Returns the server's view (an error if it refused the
/// handshake) and whether the client then read the byte the server sends after accepting.
async fn connect(pki: &Pki, client: Arc<ClientConfig>, server_name: &str) -> (std::io::Result<Seen>, bool) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(pki.server_config());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let (_, conn) = tls.get_ref();
        let seen = (
            conn.peer_certificates().and_then(identity),
            conn.alpn_protocol().map(<[u8]>::to_vec),
        );
        tls.write_all(b"k").await?;
        tls.shutdown().await?;
        Ok(seen)
    });
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client_read = match TlsConnector::from(client).connect(name, tcp).await {
        Ok(mut tls) => {
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await.is_ok_and(|_| byte == *b"k")
        }
        Err(_) => false,
    };
    (server.await.unwrap(), client_read)
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..UserInfo::default()
    }
}

#[tokio::test]
async fn admin_certificate_authenticates_over_h2() {
    let dir = TempDir::new("pki-admin");
    let pki = lab_pki(&dir);
    let (seen, client_read) = connect(&pki, client_config(&pki, Some(pki.admin())), "127.0.0.1").await;
    let (who, alpn) = seen.expect("handshake");
    assert_eq!(
        who,
        Some(user("kubernetes-admin", &["system:masters", "system:authenticated"]))
    );
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert!(client_read);
}

#[tokio::test]
async fn server_certificate_holds_every_name_the_server_is_reached_by() {
    let dir = TempDir::new("pki-names");
    let pki = lab_pki(&dir);
    for name in [
        "127.0.0.1",
        "172.18.0.2",
        "10.96.0.1",
        "kubernetes",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    ] {
        let (seen, client_read) = connect(&pki, client_config(&pki, None), name).await;
        assert!(seen.is_ok() && client_read, "server certificate not valid for {name}");
    }
    let (_, client_read) = connect(&pki, client_config(&pki, None), "10.96.0.2").await;
    assert!(!client_read, "server certificate valid for a name it was not given");
}

#[tokio::test]
async fn client_without_certificate_completes_handshake_anonymously() {
    let dir = TempDir::new("pki-anon");
    let pki = lab_pki(&dir);
    let (seen, client_read) = connect(&pki, client_config(&pki, None), "127.0.0.1").await;
    assert_eq!(seen.expect("handshake").0, None);
    assert!(client_read);
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let (dir, other_dir) = (TempDir::new("pki-lab"), TempDir::new("pki-other"));
    let (pki, other) = (lab_pki(&dir), lab_pki(&other_dir));
    // Trusts the lab's server, but presents the other lab's admin certificate.
    let config = client_config(&pki, Some(other.admin()));
    let (seen, client_read) = connect(&pki, config, "127.0.0.1").await;
    let refusal = seen
        .expect_err("server accepted a certificate from another CA")
        .to_string();
    // Both CAs are called weft-test-ca: the name matches, the signature does not.
    assert!(refusal.contains("invalid peer certificate"), "{refusal}");
    assert!(!client_read);
}

#[tokio::test]
async fn issued_node_credential_names_node_and_group() {
    let dir = TempDir::new("pki-node");
    let pki = lab_pki(&dir);
    let node = pki.issue_client("system:node:worker-1", &["system:nodes"]).unwrap();
    let (seen, _) = connect(&pki, client_config(&pki, Some(&node)), "127.0.0.1").await;
    assert_eq!(
        seen.unwrap().0,
        Some(user("system:node:worker-1", &["system:nodes", "system:authenticated"]))
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn restart_keeps_ca_and_admin_and_keys_are_private() {
    let dir = TempDir::new("pki-restart");
    let first = lab_pki(&dir);
    let pki_dir = dir.path().join("pki");
    let server_cert = std::fs::read(pki_dir.join("apiserver.crt")).unwrap();
    let second = lab_pki(&dir);
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(first.admin().cert_pem, second.admin().cert_pem);
    assert_eq!(first.admin().key_pem, second.admin().key_pem);
    assert_eq!(std::fs::read(pki_dir.join("apiserver.crt")).unwrap(), server_cert);
    assert_eq!(mode(&pki_dir), 0o700);
    for key in ["ca.key", "apiserver.key", "admin.key"] {
        assert_eq!(mode(&pki_dir.join(key)), 0o600, "{key}");
    }
    assert!(first.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    let ca = CertificateDer::from_pem_slice(first.ca_pem().as_bytes()).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(&ca).unwrap();
    assert_eq!(
        ca.subject().iter_common_name().next().unwrap().as_str().unwrap(),
        "weft-test-ca"
    );
    assert!(ca.is_ca());
}

#[test]
fn other_addresses_reissue_only_the_server_certificate() {
    let dir = TempDir::new("pki-readdress");
    let pki_dir = dir.path().join("pki");
    let first = Pki::load_or_create(&pki_dir, "test", &names([172, 18, 0, 2])).unwrap();
    let server_cert = std::fs::read(pki_dir.join("apiserver.crt")).unwrap();
    let second = Pki::load_or_create(&pki_dir, "test", &names([172, 18, 0, 3])).unwrap();
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(first.admin().cert_pem, second.admin().cert_pem);
    assert_ne!(std::fs::read(pki_dir.join("apiserver.crt")).unwrap(), server_cert);
}

#[test]
fn leaves_of_a_replaced_ca_are_reissued() {
    let dir = TempDir::new("pki-newca");
    let pki_dir = dir.path().join("pki");
    let first = lab_pki(&dir);
    std::fs::remove_file(pki_dir.join("ca.crt")).unwrap();
    std::fs::remove_file(pki_dir.join("ca.key")).unwrap();
    let second = lab_pki(&dir);
    assert_ne!(first.ca_pem(), second.ca_pem());
    assert_ne!(first.admin().cert_pem, second.admin().cert_pem);
}

#[test]
fn half_a_ca_is_an_error_not_a_new_ca() {
    let dir = TempDir::new("pki-half");
    lab_pki(&dir);
    let pki_dir = dir.path().join("pki");
    std::fs::remove_file(pki_dir.join("ca.key")).unwrap();
    let err = Pki::load_or_create(&pki_dir, "test", &names([172, 18, 0, 2])).unwrap_err();
    assert!(matches!(err, PkiError::IncompleteCa { .. }), "{err}");
    assert!(!pki_dir.join("ca.key").exists());
}

#[test]
fn identity_of_nothing_is_none() {
    assert_eq!(identity(&[]), None);
    assert_eq!(identity(&[CertificateDer::from(b"not a certificate".to_vec())]), None);
}
