//! `port-forward`: TCP connections to a pod's ports, opened inside the pod's network namespace as kubelet does.
//! Two wire forms:
//! - kubectl: SPDY/3.1, on a plain SPDY upgrade or tunneled in WebSocket binary messages
//!   (`SPDY/3.1+portforward.k8s.io`); every local connection is a pair of streams, `error` and `data`, with the
//!   same `requestID` and the `port`;
//! - kube-rs: the WebSocket channel protocol with `?ports=80,443`: port i has channel 2i (data) and 2i+1 (error),
//!   each opened by the port number (2 bytes, little-endian).

use crate::api::{Api, Call};
use crate::body::Body;
use crate::cluster::Cluster;
use crate::request::{Target, query_values};
use crate::spdy::{self, Stream};
use crate::status::ApiError;
use crate::upgrade::{Kind, WebSocket};
use futures_util::{SinkExt, StreamExt};
use hyper::Response;
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use weft_model::{Snapshot, k8s_openapi};

/// kubectl's SPDY tunneled in WebSocket, and the stream protocol of a plain SPDY upgrade.
const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
const SPDY_PROTOCOL: &str = "portforward.k8s.io";
const CHUNK: usize = 32 * 1024;

/// Where connections go: a pod, reached through the lab.
#[derive(Clone)]
struct Destination {
    cluster: Arc<dyn Cluster>,
    pod: Arc<Pod>,
}

impl Destination {
    /// A connection to `port`, or the message kubelet writes on the error stream.
    async fn connect(&self, port: u16) -> Result<TcpStream, String> {
        let (cluster, pod) = (self.cluster.clone(), self.pod.clone());
        let error = match tokio::task::spawn_blocking(move || cluster.connect(&pod, port)).await {
            Ok(Ok(tcp)) => match tcp.set_nonblocking(true).and_then(|()| TcpStream::from_std(tcp)) {
                Ok(tcp) => return Ok(tcp),
                Err(e) => e.to_string(),
            },
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        let meta = &self.pod.metadata;
        Err(format!(
            "error forwarding port {port} to pod {}, uid {}: {error}",
            meta.name.as_deref().unwrap_or_default(),
            meta.uid.as_deref().unwrap_or_default()
        ))
    }
}

/// `pods/NAME/portforward`.
pub fn portforward(api: &Api, call: &mut Call, snap: &Snapshot, target: &Target) -> Result<Response<Body>, ApiError> {
    let pod = crate::pods::pod(snap, target)?;
    crate::pods::running(pod)?;
    let to = Destination { cluster: api.cluster.clone(), pod: Arc::new(pod.clone()) };
    let mut protocols = vec![TUNNEL];
    protocols.extend_from_slice(crate::remotecommand::PROTOCOLS);
    let (response, kind) = crate::upgrade::negotiate(call, &protocols, &[SPDY_PROTOCOL])?;
    match kind {
        Kind::Spdy(_) => crate::upgrade::spawn(call, move |io| spdy_session(to, io))?,
        Kind::WebSocket(p) if p == TUNNEL => crate::upgrade::spawn(call, move |io| async move {
            let ws = crate::upgrade::websocket(io).await;
            spdy_session(to, tunnel(ws)).await;
        })?,
        Kind::WebSocket(_) => {
            let ports = ports(call)?;
            crate::upgrade::spawn(call, move |io| async move {
                let ws = crate::upgrade::websocket(io).await;
                channel_session(to, ports, ws).await;
            })?
        }
    }
    Ok(response)
}

/// The `ports` parameter: repeated, or comma-separated.
fn ports(call: &Call) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for p in query_values(&call.raw_query, "ports").iter().flat_map(|v| v.split(',')) {
        match p.trim().parse::<u16>() {
            Ok(port) if port > 0 => ports.push(port),
            _ => return Err(ApiError::bad_request(format!("invalid port {p:?}"))),
        }
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request("query parameter \"ports\" is required"));
    }
    Ok(ports)
}

/// A WebSocket whose binary messages carry a byte stream (client-go's TunnelingConnection), as a byte stream.
fn tunnel(ws: WebSocket) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut from_session, mut to_session) = tokio::io::split(theirs);
    let (mut sink, mut source) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(m)) = source.next().await {
            match m {
                Message::Binary(b) => {
                    if to_session.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_session.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from_session.read(&mut buf).await {
            if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    ours
}

async fn spdy_session<IO>(to: Destination, io: IO)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let Ok(mut streams) = spdy::serve(io) else { return };
    // Streams wait here for the other one of their pair.
    let mut pending: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    while let Some(stream) = streams.recv().await {
        let id = stream.header("requestid").unwrap_or_default().to_string();
        let pair = pending.entry(id.clone()).or_default();
        match stream.header("streamtype") {
            Some("error") => pair.0 = Some(stream),
            Some("data") => pair.1 = Some(stream),
            _ => {
                stream.outgoing.finish().await;
                continue;
            }
        }
        if pair.0.is_some()
            && pair.1.is_some()
            && let Some((Some(error), Some(data))) = pending.remove(&id)
        {
            tokio::spawn(forward_pair(to.clone(), error, data));
        }
    }
}

/// One kubectl connection: the data stream spliced to a new connection to the pod, failures on the error stream.
async fn forward_pair(to: Destination, error: Stream, mut data: Stream) {
    let port = data.header("port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
    let tcp = match port {
        Some(port) => to.connect(port).await,
        None => Err(format!("invalid port {:?}", data.header("port").unwrap_or_default())),
    };
    let tcp = match tcp {
        Ok(tcp) => tcp,
        Err(message) => {
            error.outgoing.data(message.as_bytes()).await;
            error.outgoing.finish().await;
            data.outgoing.finish().await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let mut incoming = std::mem::replace(&mut data.incoming, mpsc::channel(1).1);
    tokio::spawn(async move {
        while let Some(chunk) = incoming.recv().await {
            if to_pod.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to_pod.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            read = from_pod.read(&mut buf) => match read {
                Ok(n @ 1..) if data.outgoing.data(&buf[..n]).await => {}
                _ => break,
            },
            () = data.outgoing.closed() => break,
        }
    }
    // kubectl waits for the error stream to end before it closes its side.
    data.outgoing.finish().await;
    error.outgoing.finish().await;
}

/// kube-rs: every port connected once for the whole session.
async fn channel_session(to: Destination, ports: Vec<u16>, ws: WebSocket) {
    let (mut sink, mut source) = ws.split();
    let (out, mut to_send) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = to_send.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let message = |channel: usize, data: &[u8]| {
        let mut bytes = Vec::with_capacity(data.len() + 1);
        bytes.push(channel as u8);
        bytes.extend_from_slice(data);
        Message::binary(bytes)
    };
    let mut writers: HashMap<usize, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut readers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        for channel in [2 * i, 2 * i + 1] {
            if out.send(message(channel, &port.to_le_bytes())).await.is_err() {
                return;
            }
        }
        match to.connect(*port).await {
            Err(e) => {
                let _ = out.send(message(2 * i + 1, e.as_bytes())).await;
            }
            Ok(tcp) => {
                let (mut from_pod, mut to_pod) = tcp.into_split();
                let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
                writers.insert(2 * i, tx);
                tokio::spawn(async move {
                    while let Some(chunk) = rx.recv().await {
                        if to_pod.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_pod.shutdown().await;
                });
                let out = out.clone();
                readers.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; CHUNK];
                    while let Ok(n @ 1..) = from_pod.read(&mut buf).await {
                        if out.send(message(2 * i, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }));
            }
        }
    }
    let all_read = futures_util::future::join_all(readers);
    tokio::pin!(all_read);
    loop {
        tokio::select! {
            _ = &mut all_read => break,
            m = source.next() => match m {
                Some(Ok(Message::Binary(data))) => {
                    if let Some((&channel, rest)) = data.split_first()
                        && let Some(tx) = writers.get(&usize::from(channel))
                        && !rest.is_empty()
                    {
                        let _ = tx.send(rest.to_vec()).await;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    drop(out);
    drop(writers);
    let _ = writer.await;
}
