//! Pod ports whose TLS listeners handle connections in more than one way (`Serving::BySni`): HTTPS and TLS
//! Passthrough on one port, or TLS in mode Terminate. The ClientHello is read without answering it (as
//! `passthrough` does) and its server name picks the listener: a Passthrough listener's connection is spliced
//! to its TLSRoute's backend as it is; otherwise TLS is terminated with the listeners' certificates
//! (`tls::Resolver`) and the plaintext goes to the TLSRoute's backend as a TCP stream (mode Terminate, no ALPN
//! offered) or is served as HTTP requests (HTTPS, ALPN h2 and http/1.1), as on an HTTPS port.

use super::compile::Handling;
use super::passthrough::{self, HELLO_TIMEOUT, PassthroughError};
use crate::graceful::{Graceful, Watcher};
use crate::proxy::{Conn, Proxy};
use crate::proxy_protocol::Prefixed;
use crate::server;
use crate::table::Table;
use arc_swap::ArcSwap;
use bytes::BytesMut;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// The TLS configurations of a port: HTTPS's (ALPN h2, http/1.1), and the same without ALPN for TCP streams.
#[derive(Clone)]
pub struct Acceptors {
    requests: TlsAcceptor,
    streams: TlsAcceptor,
}

impl Acceptors {
    pub fn new(https: rustls::ServerConfig) -> Acceptors {
        let mut streams = https.clone();
        streams.alpn_protocols.clear();
        Acceptors {
            requests: TlsAcceptor::from(Arc::new(https)),
            streams: TlsAcceptor::from(Arc::new(streams)),
        }
    }
}

/// Serves pod port `port`'s connections by their server name until `stop` turns true; then lets the HTTP
/// connections finish as `server::serve` does.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    table: Arc<ArcSwap<Table>>,
    port: u16,
    acceptors: Acceptors,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = Graceful::new();
    while let Some((stream, client)) = server::accept(&listener, &mut stop).await {
        let (proxy, table, acceptors, watcher) = (proxy.clone(), table.clone(), acceptors.clone(), graceful.watcher());
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &proxy, &table, port, &acceptors, watcher).await {
                tracing::debug!(%client, error = %e, "TLS listener");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Reads the ClientHello of `client` (after its PROXY protocol header, with the proxy's `--proxy-protocol`),
/// then handles the connection as the listener its server name picks does.
async fn handle(
    client: TcpStream,
    proxy: &Arc<Proxy>,
    table: &ArcSwap<Table>,
    port: u16,
    acceptors: &Acceptors,
    watcher: Watcher,
) -> Result<(), PassthroughError> {
    // The pod port says which Gateway the connection is for, whatever a PROXY protocol header says.
    let local = client.local_addr()?;
    let mut hello = Vec::with_capacity(2048);
    let (peer, client, name) = passthrough::hello_of(client, proxy.proxy_protocol(), &mut hello).await?;
    let handling = table
        .load()
        .gateways()
        .port(port)
        .and_then(|p| p.listener(&name))
        .map(|l| l.handling);
    let handling = handling.ok_or_else(|| PassthroughError::NoRoute(name.clone()))?;
    if handling == Handling::Passthrough {
        return passthrough::pass(client, &hello, table, port, &name).await;
    }
    let conn = Conn {
        client: peer,
        local,
        tls: true,
        sni: Some(Arc::from(name.as_str())),
    };
    let acceptor = match handling {
        Handling::Terminate => &acceptors.streams,
        _ => &acceptors.requests,
    };
    let stream = Prefixed::new(BytesMut::from(&hello[..]), client);
    let mut tls = tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| PassthroughError::Timeout)??;
    if handling == Handling::Requests {
        server::connection(tls, proxy.clone(), conn, watcher).await;
        return Ok(());
    }
    let upstream = passthrough::route(table, port, &name)?;
    let mut backend = passthrough::connect(&upstream).await?;
    tokio::io::copy_bidirectional(&mut tls, &mut backend).await?;
    Ok(())
}
