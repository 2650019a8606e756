//! Request heads, parsed by httparse: the request line and headers become `http` types that share the head's
//! bytes (no copy per header), and the head says how the body is framed (RFC 9112 §6).

use super::body::Framing;
use crate::server::MAX_HEADER_BYTES;
use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

/// The most headers a request may have; more is answered 431 as too large a head.
const MAX_HEADERS: usize = 128;

pub(super) struct Head {
    /// The request but its body.
    pub(super) parts: http::request::Parts,
    pub(super) framing: Framing,
}

pub(super) enum Parsed {
    /// Not all of the head has come yet.
    Partial,
    Head(Box<Head>),
    /// Answered with this status, then the connection closes: 400 for a malformed head, 431 for too large a one.
    Refused(StatusCode),
}

/// Parses the head at the start of `buf` and takes it off, once it has all come.
pub(super) fn head(buf: &mut BytesMut) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEADER_BYTES => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEADER_BYTES => return Parsed::Partial,
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Err(_) => return Parsed::Refused(StatusCode::BAD_REQUEST),
    };
    // Where each piece is in the buffer: the head is then taken off as one `Bytes` the pieces are slices of.
    let base = buf.as_ptr() as usize;
    let at = |piece: &[u8]| {
        let start = piece.as_ptr() as usize - base;
        (start, start + piece.len())
    };
    let (Some(method), Some(path), Some(minor)) = (request.method, request.path, request.version) else {
        return Parsed::Refused(StatusCode::BAD_REQUEST);
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Refused(StatusCode::BAD_REQUEST);
    };
    let path = at(path.as_bytes());
    let count = request.headers.len();
    let mut places = [((0, 0), (0, 0)); MAX_HEADERS];
    for (place, header) in places.iter_mut().zip(request.headers.iter()) {
        *place = (at(header.name.as_bytes()), at(header.value));
    }
    let bytes = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(bytes.slice(path.0..path.1)) else {
        return Parsed::Refused(StatusCode::BAD_REQUEST);
    };
    let mut headers = HeaderMap::with_capacity(count);
    for ((name, value), _) in places.iter().zip(0..count) {
        let name = HeaderName::from_bytes(&bytes[name.0..name.1]);
        let value = HeaderValue::from_maybe_shared(bytes.slice(value.0..value.1));
        let (Ok(name), Ok(value)) = (name, value) else {
            return Parsed::Refused(StatusCode::BAD_REQUEST);
        };
        headers.append(name, value);
    }
    let version = if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    let Some(framing) = framing(version, &headers) else {
        return Parsed::Refused(StatusCode::BAD_REQUEST);
    };
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Parsed::Head(Box::new(Head { parts, framing }))
}

/// How the request's body is framed; none for a head that cannot be trusted to say (a Transfer-Encoding that does
/// not end in chunked, on HTTP/1.0, or beside a Content-Length; Content-Lengths that disagree): such requests are
/// how requests are smuggled past proxies, and are refused.
fn framing(version: Version, headers: &HeaderMap) -> Option<Framing> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if version == Version::HTTP_10 || headers.contains_key(header::CONTENT_LENGTH) {
            return None;
        }
        let last = codings
            .next_back()?
            .to_str()
            .ok()?
            .split(',')
            .map(str::trim)
            .next_back();
        return last
            .filter(|c| c.eq_ignore_ascii_case("chunked"))
            .map(|_| Framing::Chunked);
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let bytes = value.as_bytes();
        if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u64 = value.to_str().ok()?.parse().ok()?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    Some(match length {
        None | Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Parsed {
        head(&mut BytesMut::from(text))
    }

    fn framing_of(text: &str) -> Option<Framing> {
        match parse(text) {
            Parsed::Head(head) => Some(head.framing),
            _ => None,
        }
    }

    #[test]
    fn a_head_becomes_a_request_and_leaves_what_follows() {
        let mut buf = BytesMut::from("GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-Two: 1\r\nX-Two: 2\r\n\r\nGET /next");
        let Parsed::Head(head) = head(&mut buf) else {
            panic!("not parsed")
        };
        assert_eq!(head.parts.method, Method::GET);
        assert_eq!(head.parts.uri, "/a?b=c");
        assert_eq!(head.parts.version, Version::HTTP_11);
        assert_eq!(head.parts.headers["host"], "x");
        assert_eq!(head.parts.headers.get_all("x-two").iter().count(), 2);
        assert_eq!(head.framing, Framing::Empty);
        assert_eq!(&buf[..], b"GET /next");
        assert!(matches!(parse("GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial));
    }

    #[test]
    fn bodies_are_framed_by_length_or_chunks_and_ambiguous_framing_is_refused() {
        assert_eq!(
            framing_of("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Some(Framing::Length(5))
        );
        assert_eq!(
            framing_of("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Some(Framing::Chunked)
        );
        for smuggling in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        ] {
            assert!(
                matches!(parse(smuggling), Parsed::Refused(StatusCode::BAD_REQUEST)),
                "{smuggling:?}"
            );
        }
    }

    #[test]
    fn malformed_heads_get_400_and_too_large_ones_431() {
        assert!(matches!(parse("GET\r\n\r\n"), Parsed::Refused(StatusCode::BAD_REQUEST)));
        let large = format!("GET / HTTP/1.1\r\nCookie: {}\r\n", "a".repeat(MAX_HEADER_BYTES));
        assert!(matches!(
            parse(&large),
            Parsed::Refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert!(matches!(
            parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Parsed::Refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        ));
    }

    #[test]
    fn an_idle_connection_keeps_no_buffer() {
        let mut buf = BytesMut::from("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(matches!(head(&mut buf), Parsed::Head(_)));
        super::super::release(&mut buf);
        assert_eq!(buf.capacity(), 0);
    }
}
