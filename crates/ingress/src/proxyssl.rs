//! `proxy-ssl-secret`, `proxy-ssl-verify`, `proxy-ssl-name` and `proxy-ssl-server-name`: TLS to HTTPS and GRPCS
//! upstreams as ingress-nginx's `proxy_ssl_*`. The Secret's `ca.crt` are the roots the upstream's certificate
//! is verified against (`proxy-ssl-verify: "on"`), its `tls.crt` and `tls.key` the client certificate weft
//! presents; `proxy-ssl-name` is the name verified (and sent as SNI with `proxy-ssl-server-name: "on"`) instead
//! of the endpoint's address. Each such route gets its own rustls client (and keep-alive pool), kept across
//! tables while the annotations and the Secret's contents stay the same.

use crate::annotations::BackendProtocol;
use crate::backend::{self, UpstreamClient};
use crate::san::AltName;
use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// What an Ingress's `proxy-ssl-*` annotations ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProxySsl {
    /// `proxy-ssl-secret`: the Secret's name (`namespace/name` of the Ingress's own namespace, or `name`).
    pub secret: Option<String>,
    /// `proxy-ssl-verify: "on"`.
    pub verify: bool,
    /// `proxy-ssl-name`.
    pub name: Option<String>,
    /// `proxy-ssl-server-name: "on"`: send SNI.
    pub server_name: bool,
    /// With `verify`, the names the certificate must hold one of instead of `name` (BackendTLSPolicy's
    /// `subjectAltNames`).
    pub alt_names: Vec<AltName>,
}

impl ProxySsl {
    pub fn any(&self) -> bool {
        self.secret.is_some() || self.verify || self.name.is_some() || self.server_name
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SslError {
    #[error("{0}: not PEM: {1}")]
    Pem(&'static str, rustls::pki_types::pem::Error),
    #[error("proxy-ssl-verify needs the CA certificates of a proxy-ssl-secret (its ca.crt)")]
    NoRoots,
    #[error("the system has no CA certificates")]
    NoSystemRoots,
    #[error("ca.crt: {0}")]
    Roots(String),
    #[error("tls.crt and tls.key: {0}")]
    ClientCertificate(rustls::Error),
    #[error("proxy-ssl-name {0:?} is not a DNS name or address")]
    Name(String),
}

/// The certificates of a `proxy-ssl-secret`.
#[derive(Debug, Default)]
pub struct Material {
    roots: Vec<CertificateDer<'static>>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// A digest of the PEM texts: a changed Secret makes a new client.
    pub digest: Vec<u8>,
}

impl Material {
    pub fn from_secret(secret: &Secret) -> Result<Material, SslError> {
        let data = secret.data.as_ref();
        let field = |key: &str| data.and_then(|d| d.get(key)).map(|b| b.0.as_slice());
        Material::from_pem(&field)
    }

    /// The material of PEM texts by their Secret keys (`ca.crt`, `tls.crt`, `tls.key`; each may be absent).
    pub fn from_pem<'a>(field: &dyn Fn(&str) -> Option<&'a [u8]>) -> Result<Material, SslError> {
        let certificates = |key: &'static str, pem: &[u8]| {
            CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SslError::Pem(key, e))
        };
        let roots = field("ca.crt").map(|pem| certificates("ca.crt", pem)).transpose()?;
        let client = match (field("tls.crt"), field("tls.key")) {
            (Some(chain), Some(key)) => Some((
                certificates("tls.crt", chain)?,
                PrivateKeyDer::from_pem_slice(key).map_err(|e| SslError::Pem("tls.key", e))?,
            )),
            _ => None,
        };
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        for key in ["ca.crt", "tls.crt", "tls.key"] {
            context.update(field(key).unwrap_or_default());
            context.update(&[0]);
        }
        Ok(Material {
            roots: roots.unwrap_or_default(),
            client,
            digest: context.finish().as_ref().to_vec(),
        })
    }
}

impl Material {
    /// Whether it has CA certificates to verify with.
    pub fn has_roots(&self) -> bool {
        !self.roots.is_empty()
    }

    /// The system's CA certificates (rustls-native-certs: on Linux the files of `SSL_CERT_FILE`/`SSL_CERT_DIR`
    /// or the distribution's bundle, /etc/ssl/certs on Debian), read once per process.
    pub fn system() -> Result<Material, SslError> {
        static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
        let roots = ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs);
        if roots.is_empty() {
            return Err(SslError::NoSystemRoots);
        }
        Ok(Material {
            roots: roots.clone(),
            client: None,
            digest: b"system".to_vec(),
        })
    }
}

/// The rustls settings of upstream connections for `ssl` with the Secret's `material`.
fn tls_config(ssl: &ProxySsl, material: &Material) -> Result<ClientConfig, SslError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(SslError::ClientCertificate)?;
    let builder = if ssl.verify {
        if material.roots.is_empty() {
            return Err(SslError::NoRoots);
        }
        let mut roots = RootCertStore::empty();
        for root in &material.roots {
            roots.add(root.clone()).map_err(|e| SslError::Roots(e.to_string()))?;
        }
        if !ssl.alt_names.is_empty() {
            let verifier = crate::san::verifier(Arc::new(roots), ssl.alt_names.clone(), &provider);
            builder.dangerous().with_custom_certificate_verifier(verifier)
        } else {
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| SslError::Roots(e.to_string()))?;
            builder.with_webpki_verifier(verifier)
        }
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(weft_tls::unverified(&provider))
    };
    let mut config = match &material.client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(SslError::ClientCertificate)?,
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = ssl.server_name;
    Ok(config)
}

/// An upstream client's identity: the Ingress, its annotations, backend protocol, connect timeout and the
/// digest of its Secret.
pub type Key = (String, ProxySsl, BackendProtocol, Option<Duration>, Vec<u8>);

/// The upstream clients of every Ingress with `proxy-ssl-*`, kept across tables.
#[derive(Default)]
pub struct Clients(Mutex<HashMap<Key, UpstreamClient>>);

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clients")
    }
}

impl Clients {
    /// The client of Ingress `ingress` for `ssl`, `protocol` and `connect` timeout (none: the proxy's), made
    /// once per distinct set of these and the Secret's contents.
    pub fn of(&self, key: Key, material: &Material, connect: Duration) -> Result<UpstreamClient, SslError> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = all.get(&key) {
            return Ok(client.clone());
        }
        let (_, ssl, protocol, _, _) = &key;
        let name = match &ssl.name {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| SslError::Name(name.clone()))?),
            None => None,
        };
        let client = backend::client_with(*protocol, connect, tls_config(ssl, material)?, name);
        all.insert(key, client.clone());
        Ok(client)
    }

    /// Drops the clients not in `live`.
    pub fn retain(&self, live: &BTreeSet<Key>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|key, _| live.contains(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn verification_needs_roots_and_the_digest_follows_the_contents() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_string()]).unwrap();
        let one = Material::from_secret(&secret(&[("ca.crt", &ca.cert.pem())])).unwrap();
        let verify = ProxySsl {
            verify: true,
            ..ProxySsl::default()
        };
        assert!(tls_config(&verify, &one).is_ok());
        assert!(matches!(
            tls_config(&verify, &Material::default()),
            Err(SslError::NoRoots)
        ));
        let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
        let two = Material::from_secret(&secret(&[("ca.crt", &other.cert.pem())])).unwrap();
        assert_ne!(one.digest, two.digest);
        assert!(matches!(
            Material::from_secret(&secret(&[("tls.crt", "junk"), ("tls.key", "junk")])),
            Err(SslError::Pem(..))
        ));
        // Unverified, without a Secret: still a client (SNI off unless asked).
        assert!(
            !tls_config(&ProxySsl::default(), &Material::default())
                .unwrap()
                .enable_sni
        );
    }
}
