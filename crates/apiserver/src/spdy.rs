//! SPDY/3.1, the server side, as far as kubectl's port-forward needs it: the frames, header blocks compressed
//! with zlib and the SPDY/3 dictionary (one zlib stream per direction for the whole session), and a session that
//! accepts the client's streams, answers each with SYN_REPLY, echoes PINGs and carries DATA both ways.
//! Flow control is not kept: kubectl's SPDY library (moby/spdystream) neither sends nor honours WINDOW_UPDATE.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::collections::HashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const FLAG_FIN: u8 = 1;
/// A header block inflated beyond this is refused (kubectl's are a few hundred bytes).
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// RST_STREAM status for a stream nobody serves.
pub const REFUSED_STREAM: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("header block: {0}")]
    HeaderBlock(String),
}

/// Header names and values, in order; a value with several parts keeps SPDY's NUL separators.
pub type Headers = Vec<(String, String)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    Headers {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Ping(u32),
    GoAway {
        last_stream: u32,
        status: u32,
    },
    /// SETTINGS, WINDOW_UPDATE and control frames of unknown types.
    Ignored,
}

/// The words of the SPDY/3 header compression dictionary (draft 3, 2.6.10.1), each written with a 4-byte
/// big-endian length before it, then `DICTIONARY_TAIL` as is.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

fn dictionary() -> Vec<u8> {
    let mut d = Vec::with_capacity(1423);
    for w in DICTIONARY_WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    d
}

/// Compresses this side's header blocks: one zlib stream for the session, flushed after every block.
pub struct Deflater(Compress);

impl Deflater {
    pub fn new() -> Result<Deflater, SpdyError> {
        let mut c = Compress::new(Compression::default(), true);
        c.set_dictionary(&dictionary())
            .map_err(|e| SpdyError::HeaderBlock(e.to_string()))?;
        Ok(Deflater(c))
    }

    fn block(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut plain = Vec::new();
        plain.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            for part in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
                plain.extend_from_slice(&(part.len() as u32).to_be_bytes());
                plain.extend_from_slice(part);
            }
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let start = self.0.total_in();
        loop {
            let consumed = (self.0.total_in() - start) as usize;
            out.reserve(256);
            self.0
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::HeaderBlock(e.to_string()))?;
            // Done once all input is in and the flush left spare room in the output.
            if (self.0.total_in() - start) as usize == plain.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Inflates the peer's header blocks (its one zlib stream, which asks for the dictionary first).
pub struct Inflater(Decompress);

impl Default for Inflater {
    fn default() -> Self {
        Inflater(Decompress::new(true))
    }
}

impl Inflater {
    fn block(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let bad = |e: &dyn std::fmt::Display| SpdyError::HeaderBlock(e.to_string());
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let start = self.0.total_in();
        loop {
            let consumed = (self.0.total_in() - start) as usize;
            if consumed == compressed.len() && out.len() < out.capacity() {
                break;
            }
            if out.len() >= MAX_HEADER_BLOCK {
                return Err(SpdyError::HeaderBlock("too large".into()));
            }
            out.reserve(1024);
            match self
                .0
                .decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0.set_dictionary(&dictionary()).map_err(|e| bad(&e))?;
                }
                Err(e) => return Err(bad(&e)),
            }
        }
        parse_block(&out)
    }
}

fn parse_block(b: &[u8]) -> Result<Headers, SpdyError> {
    let mut c = Cursor(b);
    let count = c.number()?;
    let mut headers = Vec::new();
    for _ in 0..count {
        headers.push((c.text()?, c.text()?));
    }
    Ok(headers)
}

/// Reads a header block's length-prefixed fields.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SpdyError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(SpdyError::Malformed("header block"))?;
        self.0 = rest;
        Ok(head)
    }

    fn number(&mut self) -> Result<usize, SpdyError> {
        Ok(be32(self.take(4)?, 0) as usize)
    }

    fn text(&mut self) -> Result<String, SpdyError> {
        let n = self.number()?;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Reads one frame; None at the end of the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, inflater: &mut Inflater) -> Result<Option<Frame>, SpdyError> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut payload = vec![0u8; length];
    r.read_exact(&mut payload).await?;
    decode(head, &payload, inflater).map(Some)
}

fn decode(head: [u8; 8], p: &[u8], inflater: &mut Inflater) -> Result<Frame, SpdyError> {
    let flags = head[4];
    let fin = flags & FLAG_FIN != 0;
    let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if word & 0x8000_0000 == 0 {
        return Ok(Frame::Data {
            stream: word & 0x7fff_ffff,
            fin,
            data: p.to_vec(),
        });
    }
    let version = ((word >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(SpdyError::Version(version));
    }
    let stream = be32(p, 0) & 0x7fff_ffff;
    let need = |n: usize, what: &'static str| {
        if p.len() < n {
            Err(SpdyError::Malformed(what))
        } else {
            Ok(())
        }
    };
    Ok(match (word & 0xffff) as u16 {
        SYN_STREAM => {
            need(10, "SYN_STREAM")?;
            Frame::SynStream {
                stream,
                fin,
                headers: inflater.block(&p[10..])?,
            }
        }
        SYN_REPLY => {
            need(4, "SYN_REPLY")?;
            Frame::SynReply {
                stream,
                fin,
                headers: inflater.block(&p[4..])?,
            }
        }
        HEADERS => {
            need(4, "HEADERS")?;
            Frame::Headers {
                stream,
                fin,
                headers: inflater.block(&p[4..])?,
            }
        }
        RST_STREAM => {
            need(8, "RST_STREAM")?;
            Frame::RstStream {
                stream,
                status: be32(p, 4),
            }
        }
        PING => {
            need(4, "PING")?;
            Frame::Ping(be32(p, 0))
        }
        GOAWAY => {
            need(8, "GOAWAY")?;
            Frame::GoAway {
                last_stream: stream,
                status: be32(p, 4),
            }
        }
        _ => Frame::Ignored,
    })
}

/// The bytes of a frame (`Ignored` encodes to nothing).
pub fn encode(frame: &Frame, deflater: &mut Deflater) -> Result<Vec<u8>, SpdyError> {
    let control = |kind: u16, flags: u8, body: Vec<u8>| {
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.push(flags);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&body);
        out
    };
    let fin_flag = |fin: bool| if fin { FLAG_FIN } else { 0 };
    Ok(match frame {
        Frame::SynStream { stream, fin, headers } => {
            let mut body = Vec::new();
            body.extend_from_slice(&stream.to_be_bytes());
            body.extend_from_slice(&[0; 6]);
            body.extend_from_slice(&deflater.block(headers)?);
            control(SYN_STREAM, fin_flag(*fin), body)
        }
        Frame::SynReply { stream, fin, headers } | Frame::Headers { stream, fin, headers } => {
            let kind = if matches!(frame, Frame::SynReply { .. }) {
                SYN_REPLY
            } else {
                HEADERS
            };
            let mut body = stream.to_be_bytes().to_vec();
            body.extend_from_slice(&deflater.block(headers)?);
            control(kind, fin_flag(*fin), body)
        }
        Frame::Data { stream, fin, data } => {
            let mut out = Vec::with_capacity(8 + data.len());
            out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
            out.push(fin_flag(*fin));
            out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(data);
            out
        }
        Frame::RstStream { stream, status } => {
            control(RST_STREAM, 0, [stream.to_be_bytes(), status.to_be_bytes()].concat())
        }
        Frame::Ping(id) => control(PING, 0, id.to_be_bytes().to_vec()),
        Frame::GoAway { last_stream, status } => {
            control(GOAWAY, 0, [last_stream.to_be_bytes(), status.to_be_bytes()].concat())
        }
        Frame::Ignored => Vec::new(),
    })
}

/// The largest DATA frame this side sends.
pub const MAX_DATA: usize = 32 * 1024;

/// A stream the client opened: its headers, what it sends (ends at its FIN or reset), and the way back.
pub struct Stream {
    pub headers: Headers,
    pub incoming: mpsc::Receiver<Vec<u8>>,
    pub outgoing: Outgoing,
}

impl Stream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends on one stream.
#[derive(Clone)]
pub struct Outgoing {
    stream: u32,
    frames: mpsc::Sender<Frame>,
}

impl Outgoing {
    /// Sends data (in frames of at most `MAX_DATA`); false once the session is gone.
    pub async fn data(&self, data: &[u8]) -> bool {
        for chunk in data.chunks(MAX_DATA) {
            let frame = Frame::Data {
                stream: self.stream,
                fin: false,
                data: chunk.to_vec(),
            };
            if self.frames.send(frame).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Resolves when the session is gone.
    pub async fn closed(&self) {
        self.frames.closed().await
    }

    /// Ends this side of the stream.
    pub async fn finish(&self) {
        let _ = self
            .frames
            .send(Frame::Data {
                stream: self.stream,
                fin: true,
                data: Vec::new(),
            })
            .await;
    }
}

/// Runs a session on `io`; the streams the client opens arrive on the receiver, which ends with the session.
pub fn serve<IO>(io: IO) -> Result<mpsc::Receiver<Stream>, SpdyError>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let (frames, mut to_write) = mpsc::channel::<Frame>(64);
    let (accepted, streams) = mpsc::channel(16);
    let mut deflater = Deflater::new()?;
    // The writer stops when the reader does (the client left), so that every stream sees the session end.
    let (read_done, mut reading) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                frame = to_write.recv() => frame,
                _ = &mut reading => None,
            };
            let Some(frame) = frame else { break };
            let Ok(bytes) = encode(&frame, &mut deflater) else {
                break;
            };
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    tokio::spawn(async move {
        let _read_done = read_done;
        let mut inflater = Inflater::default();
        let mut open: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
        while let Ok(Some(frame)) = read_frame(&mut reader, &mut inflater).await {
            match frame {
                Frame::SynStream { stream, fin, headers } => {
                    if open.contains_key(&stream) {
                        continue;
                    }
                    let reply = Frame::SynReply {
                        stream,
                        fin: false,
                        headers: Vec::new(),
                    };
                    if frames.send(reply).await.is_err() {
                        break;
                    }
                    let (tx, incoming) = mpsc::channel(64);
                    if !fin {
                        open.insert(stream, tx);
                    }
                    let outgoing = Outgoing {
                        stream,
                        frames: frames.clone(),
                    };
                    if accepted
                        .send(Stream {
                            headers,
                            incoming,
                            outgoing,
                        })
                        .await
                        .is_err()
                    {
                        let _ = frames
                            .send(Frame::RstStream {
                                stream,
                                status: REFUSED_STREAM,
                            })
                            .await;
                    }
                }
                Frame::Data { stream, fin, data } => {
                    if let Some(tx) = open.get(&stream)
                        && !data.is_empty()
                        && tx.send(data).await.is_err()
                    {
                        open.remove(&stream);
                    }
                    if fin {
                        open.remove(&stream);
                    }
                }
                Frame::Headers { stream, fin: true, .. } | Frame::RstStream { stream, .. } => {
                    open.remove(&stream);
                }
                Frame::Ping(id) => {
                    if frames.send(Frame::Ping(id)).await.is_err() {
                        break;
                    }
                }
                Frame::GoAway { .. } => break,
                Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Ignored => {}
            }
        }
    });
    Ok(streams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        // Its Adler-32, the dictionary id every SPDY/3 header stream names.
        let (mut a, mut b) = (1u32, 0u32);
        for byte in &d {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(b << 16 | a, 0xe3c6_a7c2);
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    async fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let mut deflater = Deflater::new().unwrap();
        let mut wire = Vec::new();
        for f in frames {
            wire.extend(encode(f, &mut deflater).unwrap());
        }
        let mut inflater = Inflater::default();
        let mut r = &wire[..];
        let mut out = Vec::new();
        while let Some(f) = read_frame(&mut r, &mut inflater).await.unwrap() {
            out.push(f);
        }
        out
    }

    #[tokio::test]
    async fn frames_and_header_blocks_survive_a_round_trip() {
        let frames = vec![
            Frame::SynStream {
                stream: 1,
                fin: false,
                headers: headers(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynStream {
                stream: 3,
                fin: false,
                headers: headers(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream: 3,
                fin: false,
                headers: Vec::new(),
            },
            Frame::Data {
                stream: 3,
                fin: false,
                data: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            },
            Frame::Data {
                stream: 3,
                fin: true,
                data: Vec::new(),
            },
            Frame::Headers {
                stream: 1,
                fin: true,
                headers: headers(&[("x", "a\0b")]),
            },
            Frame::Ping(7),
            Frame::RstStream {
                stream: 1,
                status: REFUSED_STREAM,
            },
            Frame::GoAway {
                last_stream: 3,
                status: 0,
            },
        ];
        assert_eq!(round_trip(&frames).await, frames);
    }

    #[tokio::test]
    async fn header_blocks_use_the_dictionary_and_one_stream() {
        let mut deflater = Deflater::new().unwrap();
        let h = headers(&[("streamtype", "data"), ("port", "8080")]);
        let first = deflater.block(&h).unwrap();
        // zlib header with FDICT and the dictionary's id.
        assert_eq!(first[1] & 0x20, 0x20);
        assert_eq!(&first[2..6], &0xe3c6_a7c2u32.to_be_bytes());
        // The second block goes on in the same stream: no new zlib header, and it is shorter.
        let second = deflater.block(&h).unwrap();
        assert!(second.len() < first.len());
        let mut inflater = Inflater::default();
        assert_eq!(inflater.block(&first).unwrap(), h);
        assert_eq!(inflater.block(&second).unwrap(), h);
    }

    #[tokio::test]
    async fn bad_input_is_an_error_not_a_panic() {
        let mut inflater = Inflater::default();
        assert!(inflater.block(b"\x78\xbbnot zlib at all").is_err());
        // A SYN_STREAM too short for its fixed fields, a wrong version.
        let mut r: &[u8] = &[0x80, 3, 0, 1, 0, 0, 0, 2, 0, 1];
        assert!(read_frame(&mut r, &mut inflater).await.is_err());
        let mut r: &[u8] = &[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(matches!(
            read_frame(&mut r, &mut inflater).await,
            Err(SpdyError::Version(2))
        ));
        assert!(parse_block(&[0, 0, 0, 5, 0, 0]).is_err());
    }
}
