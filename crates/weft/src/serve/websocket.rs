//! WebSocket echo (RFC 6455): an upgrade request is answered 101, then each message frame comes back unmasked
//! and a close frame is answered with one before the connection ends, so a client sees its messages pass
//! through a proxy and back.

use std::io::{self, BufReader, Read, Write};

use super::Head;

/// Whether `head` asks to switch to WebSocket.
pub fn asks(head: &Head) -> bool {
    head.connection_has("upgrade")
        && head
            .header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        && head.header("sec-websocket-key").is_some()
}

/// The 101 answer to `head` (which [`asks`]).
pub fn switching(head: &Head) -> Vec<u8> {
    let key = head.header("sec-websocket-key").unwrap_or_default();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// Sends each frame read from `conn` back unmasked, until a close frame (answered) or the end.
pub fn echo<S: Read + Write>(conn: &mut BufReader<S>) -> io::Result<()> {
    loop {
        let (first, payload) = read_frame(conn)?;
        conn.get_mut().write_all(&frame(first, &payload))?;
        conn.get_mut().flush()?;
        if first & 0x0f == CLOSE {
            return Ok(());
        }
    }
}

/// The opcode of a close frame.
const CLOSE: u8 = 0x8;

/// One frame: its first byte (FIN, opcode) and its payload, unmasked.
fn read_frame(reader: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut start = [0u8; 2];
    reader.read_exact(&mut start)?;
    let len = match start[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            reader.read_exact(&mut n)?;
            u64::from(u16::from_be_bytes(n))
        }
        127 => {
            let mut n = [0u8; 8];
            reader.read_exact(&mut n)?;
            u64::from_be_bytes(n)
        }
        n => u64::from(n),
    };
    let mut mask = [0u8; 4];
    if start[1] & 0x80 != 0 {
        reader.read_exact(&mut mask)?;
    }
    let mut payload = Vec::new();
    reader.take(len).read_to_end(&mut payload)?;
    if payload.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok((start[0], payload))
}

/// A server's (unmasked) frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![first];
    match payload.len() {
        n @ 0..=125 => frame.push(n as u8),
        n @ 126..=0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_unmasked() {
        // "hello" masked with 1 2 3 4, then a close frame without payload.
        let mask = [1u8, 2, 3, 4];
        let mut input = vec![0x81, 0x85];
        input.extend_from_slice(&mask);
        input.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        input.extend_from_slice(&[0x88, 0x80, 0, 0, 0, 0]);
        input.extend_from_slice(b"after close");
        let mut input = input.as_slice();
        let (first, payload) = read_frame(&mut input).unwrap();
        assert_eq!(frame(first, &payload), [&[0x81, 0x05][..], b"hello"].concat());
        let (first, payload) = read_frame(&mut input).unwrap();
        assert_eq!((first & 0x0f, frame(first, &payload)), (CLOSE, vec![0x88, 0x00]));
        let long = vec![7u8; 300];
        assert_eq!(frame(0x82, &long)[..4], [0x82, 126, 1, 44]);
    }

    #[test]
    fn the_accept_key_is_the_rfcs() {
        let head = Head {
            method: "GET".into(),
            target: "/".into(),
            version: crate::serve::Version::Http11,
            headers: vec![
                ("Connection".into(), "Upgrade".into()),
                ("Upgrade".into(), "websocket".into()),
                ("Sec-WebSocket-Key".into(), "dGhlIHNhbXBsZSBub25jZQ==".into()),
            ],
        };
        assert!(asks(&head));
        let answer = String::from_utf8(switching(&head)).unwrap();
        assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }
}
