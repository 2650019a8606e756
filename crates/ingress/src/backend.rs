//! The HTTP clients the proxy speaks to upstreams with, one kind per `backend-protocol`: HTTP/1.1 in cleartext or
//! over TLS, HTTP/2 with prior knowledge in cleartext (h2c, as gRPC servers take it) or over TLS with ALPN h2.
//! TLS to an upstream does not verify its certificate, as ingress-nginx without `proxy-ssl-verify`: pods serve
//! self-signed certificates for names no client could check against an endpoint's address. hyper-rustls puts
//! rustls under hyper's connection pool.

use crate::annotations::BackendProtocol;
use crate::body::Body;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;

/// Idle upstream connections kept per endpoint, and for how long (ingress-nginx's upstream keepalive defaults).
const POOL_IDLE_PER_ENDPOINT: usize = 320;
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// A client for upstreams of `protocol` whose connections time out after `connect`, with a keep-alive pool of its
/// own.
pub fn client(protocol: BackendProtocol, connect: Duration) -> UpstreamClient {
    client_with(protocol, connect, unverified_tls(), None)
}

/// A client for upstreams of `protocol` speaking TLS with `tls` (when the protocol has TLS), verifying and
/// naming the upstream as `name` instead of its address when given (`proxy-ssl-name`).
pub fn client_with(
    protocol: BackendProtocol,
    connect: Duration,
    tls: ClientConfig,
    name: Option<ServerName<'static>>,
) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect));
    // https:// URIs go to the TLS layer above.
    connector.enforce_http(false);
    let tls = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
    let tls = match name {
        Some(name) => tls.with_server_name_resolver(FixedServerNameResolver::new(name)),
        None => tls,
    };
    let connector = if protocol.http2() {
        tls.enable_http2().wrap_connector(connector)
    } else {
        tls.enable_http1().wrap_connector(connector)
    };
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(POOL_IDLE_PER_ENDPOINT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .http2_only(protocol.http2())
        .build(connector)
}

/// The scheme of the URIs requests to an upstream of `protocol` are sent to.
pub fn scheme(protocol: BackendProtocol) -> &'static str {
    if protocol.tls() { "https" } else { "http" }
}

fn unverified_tls() -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider has TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(weft_tls::unverified(&provider))
        .with_no_client_auth()
}
