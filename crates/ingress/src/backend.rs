//! The HTTP clients the proxy speaks to upstreams with, one kind per `backend-protocol`: HTTP/1.1 in cleartext or
//! over TLS, HTTP/2 with prior knowledge in cleartext (h2c, as gRPC servers take it) or over TLS with ALPN h2.
//! TLS to an upstream does not verify its certificate, as ingress-nginx without `proxy-ssl-verify`: pods serve
//! self-signed certificates for names no client could check against an endpoint's address. hyper-rustls puts
//! rustls under hyper's connection pool. Plain HTTP/1.1 upstreams, the common case, have a pool of their own
//! (`pool`); `Upstreams` is either.

use crate::annotations::BackendProtocol;
use crate::body::{Body, BoxError};
use crate::pool::{self, Lease};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
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

/// What a request is sent to its endpoint with.
pub enum Upstreams {
    /// This thread's pool of plain HTTP/1.1 connections, made within `connect`.
    Pool { connect: Duration },
    /// A client of `protocol`'s (its URIs absolute, with the endpoint); boxed, to keep the requests' futures small
    /// on the pool's path.
    Client {
        client: Box<UpstreamClient>,
        protocol: BackendProtocol,
    },
}

/// A request that got no response head.
#[derive(Debug)]
pub struct Failed {
    /// It surely did not reach the endpoint (no connection could be made).
    pub unsent: bool,
    pub error: BoxError,
}

impl Upstreams {
    /// The URI of a request for `path` (and query) to `endpoint`.
    pub fn uri(&self, endpoint: SocketAddr, path: &str) -> Result<Uri, http::uri::InvalidUri> {
        match self {
            Upstreams::Pool { .. } => Uri::try_from(path),
            Upstreams::Client { protocol, .. } => Uri::try_from(format!("{}://{endpoint}{path}", scheme(*protocol))),
        }
    }

    /// Sends `request` (its URI from `uri`) to `endpoint`: its response, and the pooled connection it came on,
    /// which its body gives back (see `pool::returning`).
    pub async fn send(
        &self,
        endpoint: SocketAddr,
        request: Request<Body>,
    ) -> Result<(Response<Incoming>, Option<Lease>), Failed> {
        match self {
            Upstreams::Pool { connect } => match pool::send(endpoint, *connect, request).await {
                Ok((response, lease)) => Ok((response, Some(lease))),
                Err(e) => Err(Failed {
                    unsent: e.unsent(),
                    error: e.into(),
                }),
            },
            Upstreams::Client { client, .. } => match client.request(request).await {
                Ok(response) => Ok((response, None)),
                Err(e) => Err(Failed {
                    unsent: e.is_connect(),
                    error: e.into(),
                }),
            },
        }
    }
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
