//! Switching a request's connection to a streaming protocol, as the pod subresources ask: WebSocket (RFC 6455)
//! with one of Kubernetes' subprotocols, or SPDY/3.1 with `X-Stream-Protocol-Version` (kubectl's fallback).
//! The 101 answer goes back through hyper; the session then runs on the upgraded connection.

use crate::api::Call;
use crate::body::{Body, full};
use crate::status::ApiError;
use hyper::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::future::Future;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

/// The upgraded connection.
pub type Io = TokioIo<Upgraded>;
pub type WebSocket = WebSocketStream<Io>;

const STREAM_PROTOCOL: &str = "x-stream-protocol-version";

/// What the client switched to, with the subprotocol chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    WebSocket(String),
    Spdy(String),
}

/// Chooses a protocol: the first of the client's WebSocket subprotocols that `websocket` holds, or for a SPDY
/// upgrade the first stream protocol that `spdy` holds. The answer is the 101 response and the choice.
pub fn negotiate(call: &Call, websocket: &[&str], spdy: &[&str]) -> Result<(Response<Body>, Kind), ApiError> {
    let upgrade = header_values(call, UPGRADE.as_str());
    let offered = |name: &str| header_values(call, name);
    let switching = |kind: &'static str| {
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, kind)
    };
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket")) {
        let key = call
            .headers
            .get(SEC_WEBSOCKET_KEY)
            .ok_or_else(|| ApiError::bad_request("unable to upgrade: missing Sec-WebSocket-Key"))?;
        let client = offered(SEC_WEBSOCKET_PROTOCOL.as_str());
        let chosen = choose(&client, websocket).ok_or_else(|| unsupported(400, &client, websocket))?;
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let response = switching("websocket")
            .header("sec-websocket-accept", accept)
            .header(SEC_WEBSOCKET_PROTOCOL, header(&chosen)?)
            .body(full(""))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok((response, Kind::WebSocket(chosen)));
    }
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("SPDY/3.1")) {
        if spdy.is_empty() {
            return Err(ApiError::bad_request(
                "unable to upgrade: this server streams this subresource over WebSocket only",
            ));
        }
        let client = offered(STREAM_PROTOCOL);
        let chosen = choose(&client, spdy).ok_or_else(|| unsupported(403, &client, spdy))?;
        let response = switching("SPDY/3.1")
            .header(STREAM_PROTOCOL, header(&chosen)?)
            .body(full(""))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok((response, Kind::Spdy(chosen)));
    }
    Err(ApiError::bad_request("Upgrade request required"))
}

/// Runs `session` on the connection once hyper has sent the 101 answer.
pub fn spawn<F, S>(call: &mut Call, session: S) -> Result<(), ApiError>
where
    S: FnOnce(Io) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let pending = call
        .upgrade
        .take()
        .ok_or_else(|| ApiError::bad_request("Upgrade request required"))?;
    tokio::spawn(async move {
        if let Ok(upgraded) = pending.await {
            session(TokioIo::new(upgraded)).await;
        }
    });
    Ok(())
}

/// The server side of a WebSocket on an upgraded connection (the handshake was the 101 answer).
pub async fn websocket(io: Io) -> WebSocket {
    WebSocketStream::from_raw_socket(io, Role::Server, None).await
}

/// Ends a WebSocket with a normal closure (kubectl takes a close without a code for an error).
pub async fn close<S>(sink: &mut S)
where
    S: futures_util::Sink<Message> + Unpin,
{
    use futures_util::SinkExt;
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(normal))).await;
    let _ = sink.close().await;
}

/// A header's values, split at commas, across repeated headers.
fn header_values(call: &Call, name: &str) -> Vec<String> {
    call.headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn choose(client: &[String], server: &[&str]) -> Option<String> {
    client.iter().find(|c| server.contains(&c.as_str())).cloned()
}

/// kube-apiserver's refusal: 400 for WebSocket, 403 for SPDY (httpstream.Handshake).
fn unsupported(code: u16, client: &[String], server: &[&str]) -> ApiError {
    let reason = if code == 403 { "Forbidden" } else { "BadRequest" };
    ApiError::new(
        code,
        reason,
        format!(
            "unable to upgrade: unable to negotiate protocol: client supports {client:?}, server supports {server:?}"
        ),
    )
}

fn header(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value).map_err(|e| ApiError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(headers: &[(&str, &str)]) -> Call {
        let mut request = hyper::Request::get("/api/v1/namespaces/default/pods/web/exec");
        for (n, v) in headers {
            request = request.header(*n, *v);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        Call::new(&parts, Default::default(), None)
    }

    #[test]
    fn websocket_takes_the_clients_first_supported_subprotocol() {
        let c = call(&[
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            (
                "sec-websocket-protocol",
                "v6.channel.k8s.io, v5.channel.k8s.io, v4.channel.k8s.io",
            ),
        ]);
        let (response, kind) = negotiate(&c, &["v4.channel.k8s.io", "v5.channel.k8s.io"], &[]).unwrap();
        assert_eq!(kind, Kind::WebSocket("v5.channel.k8s.io".into()));
        assert_eq!(response.status(), 101);
        // RFC 6455's own example key.
        assert_eq!(
            response.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(response.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    }

    #[test]
    fn spdy_takes_a_stream_protocol_and_refusals_say_why() {
        let c = call(&[
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "portforward.k8s.io"),
        ]);
        let (response, kind) = negotiate(&c, &[], &["portforward.k8s.io"]).unwrap();
        assert_eq!(kind, Kind::Spdy("portforward.k8s.io".into()));
        assert_eq!(response.headers()["x-stream-protocol-version"], "portforward.k8s.io");
        assert_eq!(negotiate(&c, &[], &["v4.channel.k8s.io"]).unwrap_err().code, 403);
        assert_eq!(negotiate(&c, &["v5.channel.k8s.io"], &[]).unwrap_err().code, 400);
        assert_eq!(
            negotiate(&call(&[]), &["v5.channel.k8s.io"], &[]).unwrap_err().code,
            400
        );
        let no_match = call(&[
            ("upgrade", "websocket"),
            ("sec-websocket-key", "x"),
            ("sec-websocket-protocol", "x"),
        ]);
        assert_eq!(negotiate(&no_match, &["v5.channel.k8s.io"], &[]).unwrap_err().code, 400);
    }
}
