//! The HTTPS client instant-acme talks through: which server certificates it trusts (the system's roots, an
//! Issuer's `caBundle`, or none with `skipTLSVerify`) and a deadline on every request, with connection failures
//! marked so that they surface as [`Error::Unreachable`](crate::Error::Unreachable).

use crate::error::{Error, Result, Transport};
use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Which certificates the ACME server's own TLS certificate may chain to, as an ACME Issuer's spec says.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// The system's roots (cert-manager: neither `caBundle` nor `skipTLSVerify`).
    #[default]
    System,
    /// Only these PEM certificates (`caBundle`, e.g. pebble's own CA).
    Bundle(Vec<u8>),
    /// Any certificate (`skipTLSVerify: true`); signatures are still checked.
    Insecure,
}

/// How long one request to the ACME server may take before the server counts as unreachable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn client(trust: &Trust, timeout: Duration) -> Result<Box<dyn HttpClient>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Client(e.to_string()))?;
    let config = match trust {
        Trust::System => builder.with_root_certificates(system_roots()).with_no_client_auth(),
        Trust::Bundle(pem) => builder.with_root_certificates(bundle(pem)?).with_no_client_auth(),
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(weft_tls::unverified(&provider))
            .with_no_client_auth(),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, BodyWrapper<Bytes>>(https);
    Ok(Box::new(Timed { client, timeout }))
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped: the server then fails verification and says so.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

fn bundle(pem: &[u8]) -> Result<RootCertStore> {
    let invalid = |detail: String| Error::InvalidConfig {
        what: "caBundle",
        detail,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(cert.map_err(|e| invalid(e.to_string()))?)
            .map_err(|e| invalid(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(invalid("no PEM certificate in it".into()));
    }
    Ok(roots)
}

/// instant-acme's hyper client with a deadline per request; failures to get an answer become [`Transport`].
struct Timed {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    timeout: Duration,
}

impl HttpClient for Timed {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let url = req.uri().to_string();
        let timeout = self.timeout;
        let response = self.client.request(req);
        Box::pin(async move {
            let failed = |detail: String| {
                instant_acme::Error::Other(Box::new(Transport {
                    url: url.clone(),
                    detail,
                }))
            };
            match tokio::time::timeout(timeout, response).await {
                Ok(Ok(response)) => Ok(BytesResponse::from(response)),
                Ok(Err(e)) => Err(failed(chain(&e))),
                Err(_) => Err(failed(format!("no answer within {timeout:?}"))),
            }
        })
    }
}

/// An error with its causes, which hold the useful part (connection refused, certificate unknown).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A bodiless GET through the same client (pebble's management interface).
pub(crate) fn get(url: &str) -> Result<http::Request<BodyWrapper<Bytes>>> {
    http::Request::get(url)
        .body(BodyWrapper::default())
        .map_err(|e| Error::InvalidConfig {
            what: "URL",
            detail: e.to_string(),
        })
}
