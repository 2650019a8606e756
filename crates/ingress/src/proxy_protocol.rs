//! The PROXY protocol (HAProxy's; version 1, text, and 2, binary), which a load balancer in front of the controller
//! (AWS NLB and ELB, HAProxy, a cloud's TCP balancer) puts before a connection's first byte to say whom the
//! connection is from: with `--proxy-protocol` every connection must start with such a header, and the client and
//! local addresses it names stand in for the connection's own (in X-Forwarded-For, X-Real-IP, X-Forwarded-Port,
//! the source ranges and the access log). The header is parsed by the `ppp` crate; bytes read past it are kept
//! for the connection (`Prefixed`).

use bytes::{Buf, BytesMut};
use ppp::v2::{self, Command};
use ppp::{HeaderResult, PartialResult, v1};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The longest header there is: version 2's 16 bytes and a 16-bit length of addresses and TLVs.
const MAX_HEADER: usize = 16 + u16::MAX as usize;
/// The longest version 1 line, CRLF included.
const V1_MAX_LINE: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
    #[error("the connection closed before its PROXY protocol header ended")]
    Closed,
    #[error("a PROXY protocol header longer than the protocol allows")]
    TooLong,
    #[error("not a PROXY protocol header: {0}")]
    Invalid(String),
}

/// The addresses a header names: the client's and the one it connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub client: SocketAddr,
    pub local: SocketAddr,
}

/// Reads the PROXY protocol header at the start of `stream`: the addresses it names (none for a v2 `LOCAL`
/// command, the balancer's own health check, or a v1 `UNKNOWN`: the connection's own addresses apply), and the
/// stream, which yields the bytes after the header first.
pub async fn accept<S: AsyncRead + Unpin>(mut stream: S) -> Result<(Option<Addresses>, Prefixed<S>), Error> {
    let mut buffer = BytesMut::with_capacity(512);
    loop {
        // `ppp` takes a version 1 line cut inside an address or port for a bad one: it gets the whole line.
        let partial_line = buffer.starts_with(v1::PROTOCOL_PREFIX.as_bytes())
            && !buffer.windows(2).any(|w| w == b"\r\n")
            && buffer.len() < V1_MAX_LINE;
        let (addresses, length) = match HeaderResult::parse(&buffer) {
            header if partial_line || header.is_incomplete() => {
                if buffer.len() >= MAX_HEADER {
                    return Err(Error::TooLong);
                }
                if stream.read_buf(&mut buffer).await? == 0 {
                    return Err(Error::Closed);
                }
                continue;
            }
            HeaderResult::V1(Ok(header)) => (of_v1(&header.addresses), header.header.len()),
            HeaderResult::V2(Ok(header)) => (of_v2(&header), header.len()),
            HeaderResult::V1(Err(e)) => return Err(Error::Invalid(e.to_string())),
            HeaderResult::V2(Err(e)) => return Err(Error::Invalid(e.to_string())),
        };
        buffer.advance(length);
        return Ok((
            addresses,
            Prefixed {
                prefix: buffer,
                inner: stream,
            },
        ));
    }
}

fn of_v1(addresses: &v1::Addresses) -> Option<Addresses> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some(Addresses {
            client: (a.source_address, a.source_port).into(),
            local: (a.destination_address, a.destination_port).into(),
        }),
        v1::Addresses::Tcp6(a) => Some(Addresses {
            client: (a.source_address, a.source_port).into(),
            local: (a.destination_address, a.destination_port).into(),
        }),
        v1::Addresses::Unknown => None,
    }
}

fn of_v2(header: &v2::Header<'_>) -> Option<Addresses> {
    if header.command == Command::Local {
        return None;
    }
    match header.addresses {
        v2::Addresses::IPv4(a) => Some(Addresses {
            client: (a.source_address, a.source_port).into(),
            local: (a.destination_address, a.destination_port).into(),
        }),
        v2::Addresses::IPv6(a) => Some(Addresses {
            client: (a.source_address, a.source_port).into(),
            local: (a.destination_address, a.destination_port).into(),
        }),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

/// A stream that yields `prefix` (what was read with the header but follows it) before the rest of `inner`.
pub struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: BytesMut, inner: S) -> Prefixed<S> {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        poll_read_after(&mut this.prefix, &mut this.inner, cx, buf)
    }
}

/// Reads what is left of `prefix`, then from `inner`.
pub(crate) fn poll_read_after<S: AsyncRead + Unpin + ?Sized>(
    prefix: &mut BytesMut,
    inner: &mut S,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    if prefix.is_empty() {
        return Pin::new(inner).poll_read(cx, buf);
    }
    let n = prefix.len().min(buf.remaining());
    buf.put_slice(&prefix[..n]);
    prefix.advance(n);
    Poll::Ready(Ok(()))
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// The addresses and what follows the header, the header sent in pieces of `chunk` bytes.
    async fn read(sent: Vec<u8>, chunk: usize) -> Result<(Option<Addresses>, Vec<u8>), Error> {
        let (mut client, server) = tokio::io::duplex(1 << 17);
        tokio::spawn(async move {
            for piece in sent.chunks(chunk) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let (addresses, mut rest) = accept(server).await?;
        let mut after = Vec::new();
        rest.read_to_end(&mut after).await?;
        Ok((addresses, after))
    }

    fn addresses(client: &str, local: &str) -> Option<Addresses> {
        Some(Addresses {
            client: client.parse().unwrap(),
            local: local.parse().unwrap(),
        })
    }

    #[tokio::test]
    async fn version_1_in_one_piece_or_byte_by_byte() {
        for chunk in [1, 4096] {
            let sent = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n\r\n".to_vec();
            let (got, after) = read(sent, chunk).await.unwrap();
            assert_eq!(got, addresses("203.0.113.7:51234", "10.0.0.1:443"));
            assert_eq!(after, b"GET / HTTP/1.1\r\n\r\n");
        }
        let sent = b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 80\r\nrest".to_vec();
        let (got, after) = read(sent, 7).await.unwrap();
        assert_eq!(got, addresses("[2001:db8::7]:51234", "[2001:db8::1]:80"));
        assert_eq!(after, b"rest");
        let (got, after) = read(b"PROXY UNKNOWN\r\nrest".to_vec(), 3).await.unwrap();
        assert_eq!((got, after.as_slice()), (None, b"rest".as_slice()));
    }

    #[tokio::test]
    async fn version_2_with_tlvs_and_the_local_command() {
        let proxied: v2::Addresses = (
            "198.51.100.9:40000".parse::<SocketAddr>().unwrap(),
            "10.0.0.1:80".parse::<SocketAddr>().unwrap(),
        )
            .into();
        let mut sent = v2::Builder::with_addresses(v2::Version::Two | Command::Proxy, v2::Protocol::Stream, proxied)
            .write_tlv(v2::Type::Authority, b"shop.example")
            .unwrap()
            .build()
            .unwrap();
        sent.extend_from_slice(b"\x16\x03\x01 a TLS hello");
        for chunk in [1, 5, 4096] {
            let (got, after) = read(sent.clone(), chunk).await.unwrap();
            assert_eq!(got, addresses("198.51.100.9:40000", "10.0.0.1:80"));
            assert_eq!(after, b"\x16\x03\x01 a TLS hello");
        }
        let mut local = v2::Builder::new(
            v2::Version::Two | Command::Local,
            v2::AddressFamily::Unspecified | v2::Protocol::Unspecified,
        )
        .build()
        .unwrap();
        local.extend_from_slice(b"GET /healthz");
        let (got, after) = read(local, 4096).await.unwrap();
        assert_eq!((got, after.as_slice()), (None, b"GET /healthz".as_slice()));
    }

    #[tokio::test]
    async fn a_connection_without_a_header_is_refused() {
        let refused = read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 4096).await;
        assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
        let cut = read(b"PROXY TCP4 203.0.113.7".to_vec(), 4096).await;
        assert!(matches!(cut, Err(Error::Closed)), "{cut:?}");
    }
}
