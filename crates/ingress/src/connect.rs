//! WebSockets over HTTP/2 (RFC 8441): an HTTP/2 client opens a WebSocket with an extended CONNECT (`:method
//! CONNECT`, `:protocol websocket`) on one stream of its connection, where an HTTP/1.1 client sends `GET` with
//! `Upgrade: websocket`. Upstreams speak HTTP/1.1, so the proxy asks them with the HTTP/1.1 handshake (a
//! `Sec-WebSocket-Key` of its own: HTTP/2 has none) and, once they switch protocols, answers the client 200 and
//! joins its stream to the upstream's connection. The frames are the same on both sides (RFC 8441 §5), so the
//! bytes go through unchanged.

use base64::Engine;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};

/// The protocol an HTTP/2 extended CONNECT asks for (its `:protocol`, e.g. `websocket`); none for any other
/// request.
pub fn protocol<B>(request: &Request<B>) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_2 || request.method() != Method::CONNECT {
        return None;
    }
    let protocol = request.extensions().get::<hyper::ext::Protocol>()?;
    HeaderValue::from_str(protocol.as_str()).ok()
}

/// Makes an extended CONNECT's parts those of an HTTP/1.1 upgrade to `protocol` (the Upgrade and Connection
/// headers are the proxy's to set): `GET`, and for WebSocket a new `Sec-WebSocket-Key`.
pub fn as_upgrade(parts: &mut http::request::Parts, protocol: &HeaderValue) {
    parts.method = Method::GET;
    parts.extensions.remove::<hyper::ext::Protocol>();
    if protocol.as_bytes().eq_ignore_ascii_case(b"websocket") {
        use ring::rand::SecureRandom;
        let mut nonce = [0u8; 16];
        // The system's random source does not fail on Linux; the key only has to be well-formed (RFC 6455 §4.1).
        let _ = ring::rand::SystemRandom::new().fill(&mut nonce);
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        if let Ok(key) = HeaderValue::try_from(key) {
            parts.headers.insert(header::SEC_WEBSOCKET_KEY, key);
        }
    }
}

/// Makes the upstream's 101 the answer to an extended CONNECT: 200, without the HTTP/1.1 handshake's headers
/// (HTTP/2 forbids the connection-specific ones; the client sent no key for an Accept to answer).
pub fn accepted(parts: &mut http::response::Parts) {
    parts.status = StatusCode::OK;
    for name in [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderName::from_static("keep-alive"),
    ] {
        parts.headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_http2_connect_with_a_protocol_is_extended() {
        let connect = |version, protocol: Option<&'static str>| {
            let mut request = Request::builder()
                .method(Method::CONNECT)
                .version(version)
                .uri("https://chat.example/socket")
                .body(())
                .unwrap();
            if let Some(protocol) = protocol {
                request
                    .extensions_mut()
                    .insert(hyper::ext::Protocol::from_static(protocol));
            }
            request
        };
        assert_eq!(
            protocol(&connect(Version::HTTP_2, Some("websocket"))),
            Some(HeaderValue::from_static("websocket"))
        );
        assert_eq!(protocol(&connect(Version::HTTP_2, None)), None);
        assert_eq!(protocol(&connect(Version::HTTP_11, Some("websocket"))), None);
    }

    #[test]
    fn the_upgrade_gets_a_key_and_the_answer_loses_the_handshake() {
        let (mut parts, ()) = Request::builder()
            .method(Method::CONNECT)
            .body(())
            .unwrap()
            .into_parts();
        as_upgrade(&mut parts, &HeaderValue::from_static("websocket"));
        assert_eq!(parts.method, Method::GET);
        let key = parts.headers[header::SEC_WEBSOCKET_KEY].to_str().unwrap();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(key).unwrap().len(), 16);
        let (mut parts, ()) = http::Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", "x")
            .header("sec-websocket-protocol", "chat")
            .body(())
            .unwrap()
            .into_parts();
        accepted(&mut parts);
        assert_eq!(parts.status, StatusCode::OK);
        let left: Vec<&str> = parts.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["sec-websocket-protocol"]);
    }
}
