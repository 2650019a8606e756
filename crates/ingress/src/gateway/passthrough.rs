//! TLS listeners in mode Passthrough and their TLSRoutes: the ClientHello's server name (SNI), read without
//! terminating TLS, picks the listener (the most specific hostname that covers it) and the TLSRoute attached for
//! that name (the oldest, as for HTTPRoutes); then a backendRef by weight, its endpoints in round-robin order,
//! and the connection is spliced to the first that accepts, starting with the bytes already read. Without a
//! server name, a route or a backend that can be reached, the connection is closed (as the spec asks of a
//! TLSRoute whose backend is invalid).

use super::compile::BackendTarget;
use crate::proxy;
use crate::proxy_protocol::Prefixed;
use crate::table::Table;
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use bytes::BytesMut;
use rustls::server::Acceptor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weft_gateway::api::{HTTPBackendRef, HTTPRouteRule, TLSRouteRule};

/// How long a client has to send its ClientHello.
pub(super) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A ClientHello larger than this is refused (one is a few hundred bytes; post-quantum key shares a few KiB).
const HELLO_LIMIT: usize = 64 * 1024;
/// How long connecting to one endpoint may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTPRoute rule a TLSRoute rule compiles as: its backendRefs, no match (every connection for the route's
/// hostnames), no filter.
pub fn as_http(rule: &TLSRouteRule) -> HTTPRouteRule {
    HTTPRouteRule {
        name: rule.name.clone(),
        backend_refs: rule
            .backend_refs
            .iter()
            .map(|b| HTTPBackendRef {
                backend: b.clone(),
                filters: Vec::new(),
            })
            .collect(),
        ..HTTPRouteRule::default()
    }
}

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// Not a whole ClientHello yet.
    More,
    /// The ClientHello's server name, lowercase.
    Name(String),
    /// A ClientHello without a server name.
    NoName,
    /// Not TLS.
    NotTls,
}

/// The server name of the ClientHello at the start of `bytes` (rustls parses it; nothing is answered).
pub fn server_name(bytes: &[u8]) -> Hello {
    let mut acceptor = Acceptor::default();
    let mut rest = bytes;
    loop {
        match acceptor.read_tls(&mut rest) {
            Ok(0) => return Hello::More,
            Ok(_) => {}
            Err(_) => return Hello::NotTls,
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return match accepted.client_hello().server_name() {
                    Some(name) => Hello::Name(name.to_ascii_lowercase()),
                    None => Hello::NoName,
                };
            }
            Ok(None) if rest.is_empty() => return Hello::More,
            Ok(None) => {}
            Err(_) => return Hello::NotTls,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PassthroughError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    ProxyProtocol(#[from] crate::proxy_protocol::Error),
    #[error("no ClientHello within {HELLO_TIMEOUT:?}")]
    Timeout,
    #[error("the client closed before its ClientHello ended")]
    Closed,
    #[error("not a TLS ClientHello")]
    NotTls,
    #[error("a ClientHello over {HELLO_LIMIT} bytes")]
    TooLarge,
    #[error("a ClientHello without a server name")]
    NoName,
    #[error("no TLSRoute for {0}")]
    NoRoute(String),
    #[error("the TLSRoute for {0} has no backend to send it to")]
    NoBackend(String),
    #[error("no endpoint of {0} accepted the connection")]
    Unreachable(String),
}

/// Serves the TLS passthrough listeners of pod port `port` until `stop` turns true; with `proxy_protocol`, each
/// connection starts with a PROXY protocol header.
pub async fn serve(
    listener: TcpListener,
    table: Arc<ArcSwap<Table>>,
    port: u16,
    proxy_protocol: bool,
    mut stop: watch::Receiver<bool>,
) {
    while let Some((stream, client)) = crate::server::accept(&listener, &mut stop).await {
        let table = table.clone();
        tokio::spawn(async move {
            if let Err(e) = splice(stream, &table, port, proxy_protocol).await {
                tracing::debug!(%client, error = %e, "TLS passthrough");
            }
        });
    }
}

/// Reads the ClientHello of `client`, then splices it to the backend its server name routes to.
async fn splice(
    client: TcpStream,
    table: &ArcSwap<Table>,
    port: u16,
    proxy_protocol: bool,
) -> Result<(), PassthroughError> {
    let mut hello = Vec::with_capacity(2048);
    let (_, client, name) = hello_of(client, proxy_protocol, &mut hello).await?;
    pass(client, &hello, table, port, &name).await
}

/// Reads the start of a TLS port's connection into `hello`, within `HELLO_TIMEOUT`: its PROXY protocol header
/// first when the port expects one (`proxy_protocol`; the header is not passed on), then its ClientHello. The
/// client (the header's, else the connection's peer), the stream after the header, and the server name.
pub(super) async fn hello_of(
    client: TcpStream,
    proxy_protocol: bool,
    hello: &mut Vec<u8>,
) -> Result<(SocketAddr, Prefixed<TcpStream>, String), PassthroughError> {
    let _ = client.set_nodelay(true);
    let peer = client.peer_addr()?;
    let started = async {
        let (named, mut stream) = match proxy_protocol {
            true => crate::proxy_protocol::accept(client).await?,
            false => (None, Prefixed::new(BytesMut::new(), client)),
        };
        let name = read_hello(&mut stream, hello).await?;
        Ok::<_, PassthroughError>((named.map_or(peer, |n| n.client), stream, name))
    };
    tokio::time::timeout(HELLO_TIMEOUT, started)
        .await
        .map_err(|_| PassthroughError::Timeout)?
}

/// Splices `client`, whose ClientHello `hello` (already read) asks for `name`, to the backend `name` routes to.
pub(super) async fn pass<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    hello: &[u8],
    table: &ArcSwap<Table>,
    port: u16,
    name: &str,
) -> Result<(), PassthroughError> {
    let upstream = route(table, port, name)?;
    let mut backend = connect(&upstream).await?;
    backend.write_all(hello).await?;
    tokio::io::copy_bidirectional(&mut client, &mut backend).await?;
    Ok(())
}

/// Reads into `hello` until it holds a whole ClientHello; its server name.
async fn read_hello<S: AsyncRead + Unpin>(client: &mut S, hello: &mut Vec<u8>) -> Result<String, PassthroughError> {
    loop {
        if client.read_buf(hello).await? == 0 {
            return Err(PassthroughError::Closed);
        }
        match server_name(hello) {
            Hello::Name(name) => return Ok(name),
            Hello::More if hello.len() > HELLO_LIMIT => return Err(PassthroughError::TooLarge),
            Hello::More => {}
            Hello::NoName => return Err(PassthroughError::NoName),
            Hello::NotTls => return Err(PassthroughError::NotTls),
        }
    }
}

/// The upstream a connection for `name` on pod port `port` goes to, by the routing table now.
pub(super) fn route(table: &ArcSwap<Table>, port: u16, name: &str) -> Result<Arc<Upstream>, PassthroughError> {
    let table = table.load();
    let entry = table
        .gateways()
        .port(port)
        .and_then(|p| p.listener(name))
        .and_then(|l| l.candidates(name).next());
    let Some(entry) = entry else {
        return Err(PassthroughError::NoRoute(name.into()));
    };
    let rule = &entry.rule;
    match rule.pick(proxy::roll(rule.total_weight())).map(|b| &b.target) {
        Some(BackendTarget::Service { upstream, .. }) if !upstream.endpoints().is_empty() => Ok(upstream.clone()),
        _ => Err(PassthroughError::NoBackend(name.into())),
    }
}

/// A connection to the first endpoint of `upstream` that accepts one.
pub(super) async fn connect(upstream: &Upstream) -> Result<TcpStream, PassthroughError> {
    let attempts: Vec<SocketAddr> = upstream.attempts().collect();
    for addr in attempts {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS passthrough: connecting"),
            Err(_) => tracing::debug!(%addr, "TLS passthrough: connecting timed out"),
        }
    }
    Err(PassthroughError::Unreachable(upstream.service.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;

    /// The first flight of a rustls client for `name` (None: no SNI, as for an IP address).
    fn client_hello(name: Option<&str>) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = match name {
            Some(n) => ServerName::try_from(n.to_string()).unwrap(),
            None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        };
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn the_server_name_of_a_client_hello_whole_or_in_pieces() {
        let hello = client_hello(Some("ABC.example.com"));
        assert_eq!(server_name(&hello), Hello::Name("abc.example.com".into()));
        for cut in [0, 1, 5, hello.len() / 2, hello.len() - 1] {
            assert_eq!(server_name(&hello[..cut]), Hello::More, "cut at {cut}");
        }
        assert_eq!(server_name(&client_hello(None)), Hello::NoName);
        assert_eq!(server_name(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Hello::NotTls);
    }

    #[test]
    fn a_tlsroute_rule_is_its_backend_refs() {
        let rule: TLSRouteRule = serde_json::from_value(
            serde_json::json!({"name": "r", "backendRefs": [{"name": "b", "port": 443, "weight": 3}]}),
        )
        .unwrap();
        let http = as_http(&rule);
        assert_eq!(http.name.as_deref(), Some("r"));
        assert!(http.matches.is_none() && http.filters.is_empty());
        assert_eq!(http.backend_refs.len(), 1);
        assert_eq!(http.backend_refs[0].backend, rule.backend_refs[0]);
    }
}
