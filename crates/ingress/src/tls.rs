//! TLS termination: certificates from `kubernetes.io/tls` Secrets, chosen by SNI (precise names, then one-label
//! wildcards), a generated self-signed certificate for every other name, TLS 1.2 and 1.3 only, ALPN h2 and
//! http/1.1. The certificates live in the routing table, so a changed Secret serves new handshakes as soon as
//! the table is swapped, with no restart and no connection cut.

use crate::host;
use crate::table::Table;
use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("is of type {0:?}, not kubernetes.io/tls")]
    Type(String),
    #[error("has no {0}")]
    Missing(&'static str),
    #[error("{0}: not PEM")]
    Pem(&'static str, rustls::pki_types::pem::Error),
    #[error("certificate and key: {0}")]
    Key(rustls::Error),
    #[error("generating the default certificate: {0}")]
    Generate(rcgen::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain and key of a `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`).
pub fn from_secret(secret: &Secret) -> Result<CertifiedKey, CertError> {
    let kind = secret.type_.as_deref().unwrap_or("Opaque");
    if kind != "kubernetes.io/tls" {
        return Err(CertError::Type(kind.into()));
    }
    let data = secret.data.as_ref();
    let field = |key: &'static str| {
        data.and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
            .ok_or(CertError::Missing(key))
    };
    from_pem(field("tls.crt")?, field("tls.key")?)
}

/// A certificate chain and its key from PEM (as a TLS Secret's `tls.crt` and `tls.key` hold them).
pub fn from_pem(crt: &[u8], key: &[u8]) -> Result<CertifiedKey, CertError> {
    let chain = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem("tls.crt", e))?;
    if chain.is_empty() {
        return Err(CertError::Missing("certificate in tls.crt"));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| CertError::Pem("tls.key", e))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(CertError::Key)
}

/// The certificate for names no Secret covers: self-signed, made at start (what ingress-nginx calls its fake
/// certificate; clients need `curl -k`).
pub fn self_signed() -> Result<CertifiedKey, CertError> {
    let generated =
        rcgen::generate_simple_self_signed(vec!["ingress.local".to_string()]).map_err(CertError::Generate)?;
    let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .map_err(|_| CertError::Missing("generated key"))?;
    CertifiedKey::from_der(vec![generated.cert.der().clone()], key, &provider()).map_err(CertError::Key)
}

/// Certificates by the names of `spec.tls[].hosts`.
#[derive(Default, Debug)]
pub struct Certificates {
    precise: HashMap<String, Arc<CertifiedKey>>,
    /// By the domain a `*.` name covers.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl Certificates {
    /// Adds `name`'s certificate unless it has one (the oldest Ingress wins).
    pub fn insert(&mut self, name: &str, key: Arc<CertifiedKey>) {
        let name = name.to_ascii_lowercase();
        match host::wildcard_domain(&name) {
            Some(domain) => self.wildcard.entry(domain.to_string()).or_insert(key),
            None => self.precise.entry(name).or_insert(key),
        };
    }

    /// The certificate for a server name: its own, else its wildcard's.
    pub fn get(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.precise
            .get(&name)
            .or_else(|| host::parent(&name).and_then(|d| self.wildcard.get(d)))
    }
}

/// Picks each handshake's certificate from the current table's certificates.
#[derive(Debug)]
pub struct Resolver {
    pub table: Arc<ArcSwap<Table>>,
    /// For names no Secret covers when there is no valid `--default-ssl-certificate`.
    pub default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let own = hello.server_name().and_then(|name| table.certificates().get(name));
        Some(own.or(table.default_certificate()).unwrap_or(&self.default).clone())
    }
}

/// The TLS listener's configuration: TLS 1.2 and 1.3, ALPN h2 then http/1.1.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(kind: &str, names: &[&str]) -> Secret {
        let generated =
            rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        Secret {
            type_: Some(kind.into()),
            data: Some(
                [
                    ("tls.crt".to_string(), ByteString(generated.cert.pem().into_bytes())),
                    (
                        "tls.key".to_string(),
                        ByteString(generated.signing_key.serialize_pem().into_bytes()),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn tls_secrets_load_and_others_are_refused() {
        assert!(from_secret(&secret("kubernetes.io/tls", &["a.example"])).is_ok());
        assert!(matches!(
            from_secret(&secret("Opaque", &["a.example"])),
            Err(CertError::Type(_))
        ));
        let mut empty = secret("kubernetes.io/tls", &["a.example"]);
        empty.data.as_mut().unwrap().remove("tls.key");
        assert!(matches!(from_secret(&empty), Err(CertError::Missing("tls.key"))));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let mut mixed = secret("kubernetes.io/tls", &["a.example"]);
        let other = secret("kubernetes.io/tls", &["b.example"]);
        mixed
            .data
            .as_mut()
            .unwrap()
            .insert("tls.key".into(), other.data.unwrap()["tls.key"].clone());
        assert!(matches!(from_secret(&mixed), Err(CertError::Key(_))));
    }

    #[test]
    fn names_find_their_own_certificate_then_their_wildcards() {
        let own = Arc::new(self_signed().unwrap());
        let wild = Arc::new(self_signed().unwrap());
        let mut certs = Certificates::default();
        certs.insert("a.foo.com", own.clone());
        certs.insert("*.foo.com", wild.clone());
        assert!(Arc::ptr_eq(certs.get("a.foo.com").unwrap(), &own));
        assert!(Arc::ptr_eq(certs.get("B.foo.com").unwrap(), &wild));
        assert!(certs.get("x.b.foo.com").is_none());
        assert!(certs.get("foo.com").is_none());
    }
}
