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
use crate::upgrade::Kind;
use futures_util::{SinkExt, StreamExt};
use hyper::Response;
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use weft_model::{Snapshot, k8s_openapi};

/// kubectl's SPDY tunneled in WebSocket, and the stream protocol of a plain SPDY upgrade.
const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
const SPDY_PROTOCOL: &str = "portforward.k8s.io";
const CHUNK: usize = 32 * 1024;

/// Opens a (blocking) connection to a port of the pod.
type Connect = Arc<dyn Fn(u16) -> std::io::Result<std::net::TcpStream> + Send + Sync>;

/// Where connections go: a pod, reached through the lab.
#[derive(Clone)]
struct Destination {
    name: String,
    uid: String,
    connect: Connect,
}

impl Destination {
    fn of(cluster: Arc<dyn Cluster>, pod: &Pod) -> Destination {
        let (name, uid) = (pod.metadata.name.clone(), pod.metadata.uid.clone());
        let pod = Arc::new(pod.clone());
        Destination {
            name: name.unwrap_or_default(),
            uid: uid.unwrap_or_default(),
            connect: Arc::new(move |port| cluster.connect(&pod, port)),
        }
    }

    /// A connection to `port`, or the message kubelet writes on the error stream.
    async fn connect(&self, port: u16) -> Result<TcpStream, String> {
        let connect = self.connect.clone();
        let error = match tokio::task::spawn_blocking(move || connect(port)).await {
            Ok(Ok(tcp)) => match tcp.set_nonblocking(true).and_then(|()| TcpStream::from_std(tcp)) {
                Ok(tcp) => return Ok(tcp),
                Err(e) => e.to_string(),
            },
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        Err(format!(
            "error forwarding port {port} to pod {}, uid {}: {error}",
            self.name, self.uid
        ))
    }
}

/// `pods/NAME/portforward`.
pub fn portforward(api: &Api, call: &mut Call, snap: &Snapshot, target: &Target) -> Result<Response<Body>, ApiError> {
    let pod = crate::pods::pod(snap, target)?;
    crate::pods::running(pod)?;
    let to = Destination::of(api.cluster.clone(), pod);
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
fn tunnel<S>(ws: WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut from_session, mut to_session) = tokio::io::split(theirs);
    let (mut sink, mut source) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(m)) = source.next().await {
            match m {
                Message::Binary(b) if to_session.write_all(&b).await.is_err() => break,
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
        crate::upgrade::close(&mut sink).await;
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
    let port = data
        .header("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p > 0);
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
async fn channel_session<S>(to: Destination, ports: Vec<u16>, ws: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (out, mut to_send) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = to_send.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        crate::upgrade::close(&mut sink).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spdy::{Deflater, Frame, Inflater, encode, read_frame};
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    /// A pod whose port 80 answers `echo:` and what it read, then closes; every other port refuses.
    fn echo_pod() -> Destination {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut buf = [0u8; 64];
                let n = conn.read(&mut buf).unwrap_or(0);
                let _ = conn.write_all(&[b"echo:", &buf[..n]].concat());
            }
        });
        Destination {
            name: "web".into(),
            uid: "u1".into(),
            connect: Arc::new(move |port| match port {
                80 => std::net::TcpStream::connect(addr),
                _ => Err(std::io::ErrorKind::ConnectionRefused.into()),
            }),
        }
    }

    async fn next_binary<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Vec<u8> {
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => return b.to_vec(),
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn channels_open_with_the_port_number_then_carry_data_and_errors() {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        tokio::spawn(channel_session(echo_pod(), vec![80, 81], server));
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        // Each channel first says its port (little-endian), in order; then 81's error.
        let mut first = Vec::new();
        for _ in 0..5 {
            first.push(next_binary(&mut client).await);
        }
        assert_eq!(
            &first[..4],
            [vec![0, 80, 0], vec![1, 80, 0], vec![2, 81, 0], vec![3, 81, 0]]
        );
        let error = String::from_utf8_lossy(&first[4][1..]).into_owned();
        assert_eq!(first[4][0], 3);
        assert!(
            error.starts_with("error forwarding port 81 to pod web, uid u1: "),
            "{error}"
        );
        client.send(Message::binary(b"\x00hi".to_vec())).await.unwrap();
        assert_eq!(next_binary(&mut client).await, b"\x00echo:hi");
        // The pod closed its end: the session ends with a normal close.
        match client.next().await {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Normal),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn spdy_pairs_streams_by_request_and_reports_refusals_on_the_error_stream() {
        let (server, client) = tokio::io::duplex(64 * 1024);
        tokio::spawn(spdy_session(echo_pod(), server));
        let (mut r, mut w) = tokio::io::split(client);
        let mut deflater = Deflater::new().unwrap();
        let mut inflater = Inflater::default();
        let open = |stream: u32, kind: &str, port: &str, request: &str| Frame::SynStream {
            stream,
            fin: false,
            headers: [("streamtype", kind), ("port", port), ("requestid", request)]
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        for f in [
            open(1, "error", "80", "0"),
            open(3, "data", "80", "0"),
            Frame::Data {
                stream: 3,
                fin: false,
                data: b"hi".to_vec(),
            },
            open(5, "error", "81", "1"),
            open(7, "data", "81", "1"),
        ] {
            w.write_all(&encode(&f, &mut deflater).unwrap()).await.unwrap();
        }
        let mut data: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut finished = Vec::new();
        let mut replied = Vec::new();
        while finished.len() < 4 {
            match read_frame(&mut r, &mut inflater).await.unwrap().unwrap() {
                Frame::SynReply { stream, .. } => replied.push(stream),
                Frame::Data { stream, fin, data: d } => {
                    data.entry(stream).or_default().extend(d);
                    if fin {
                        finished.push(stream);
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        replied.sort();
        assert_eq!(replied, [1, 3, 5, 7]);
        assert_eq!(data[&3], b"echo:hi");
        assert!(data.get(&1).is_none_or(Vec::is_empty));
        let refused = String::from_utf8_lossy(&data[&5]).into_owned();
        assert!(
            refused.starts_with("error forwarding port 81 to pod web, uid u1: "),
            "{refused}"
        );
        // PINGs come back.
        w.write_all(&encode(&Frame::Ping(9), &mut deflater).unwrap())
            .await
            .unwrap();
        assert_eq!(read_frame(&mut r, &mut inflater).await.unwrap(), Some(Frame::Ping(9)));
    }
}
