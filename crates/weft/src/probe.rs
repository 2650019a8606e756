//! `weft probe`: one connection attempt to an HTTP URL, a TCP port or a UDP port, bounded by one deadline, with
//! the outcome reduced to a short reason (`refused`, `timed out`, ...) that tests and users can match on.
//!
//! Exit codes: 0 answered, 1 failed (or an HTTP status other than 2xx/3xx), 2 bad arguments.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Limit on a response's status line plus headers, so a hostile server cannot make the probe buffer forever.
const RESPONSE_HEAD_LIMIT: usize = 64 * 1024;

#[derive(clap::Args)]
pub struct Args {
    /// http://HOST[:PORT][/path], tcp://IP:PORT or udp://IP:PORT (IPv6 addresses in brackets).
    target: String,
    /// Bound on the whole attempt (name resolution, connect, request and reply), e.g. 2s, 500ms, 1.5s.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    timeout: String,
    /// Payload of the UDP datagram (udp:// only; default `hostname`).
    #[arg(long, value_name = "DATA")]
    send: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Http {
        /// An IP address or a name to resolve.
        host: Host,
        port: u16,
        /// The Host header: the authority as written.
        authority: String,
        /// Origin-form request target, already safe to put on the request line.
        path: String,
    },
    Tcp(SocketAddr),
    Udp(SocketAddr),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let target = match parse_target(&args.target) {
        Ok(t) => t,
        Err(e) => exit(2, &format!("probe: bad target {:?}: {e}", args.target)),
    };
    let timeout = match parse_duration(&args.timeout) {
        Ok(t) => t,
        Err(e) => exit(2, &format!("probe: bad --timeout {:?}: {e}", args.timeout)),
    };
    if args.send.is_some() && !matches!(target, Target::Udp(_)) {
        exit(2, "probe: --send applies to udp:// targets only");
    }
    let deadline = Instant::now() + timeout;
    let outcome = match target {
        Target::Http {
            host,
            port,
            authority,
            path,
        } => http(&host, port, &authority, &path, deadline),
        Target::Tcp(addr) => tcp(addr, timeout),
        Target::Udp(addr) => udp(addr, args.send.as_deref().unwrap_or("hostname").as_bytes(), deadline),
    };
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => exit(1, ""),
        Err(e) => exit(1, &format!("probe: {}: {}", args.target, e.reason())),
    }
}

/// Prints `msg` (if any) to stderr and exits with `code` after flushing stdout; main's `Result` has no room for
/// exit codes other than 0 and 1.
fn exit(code: i32, msg: &str) -> ! {
    let _ = io::stdout().flush();
    if !msg.is_empty() {
        let _ = writeln!(io::stderr(), "{msg}");
    }
    std::process::exit(code)
}

/// Why an attempt failed.
#[derive(Debug)]
pub enum Failure {
    Io(io::Error),
    NotResolved,
    TimedOut,
    /// The peer answered with something that is not HTTP/1.x.
    BadResponse(&'static str),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl Failure {
    /// The short reason printed after `probe: TARGET: `.
    pub fn reason(&self) -> String {
        match self {
            Failure::NotResolved => "name not resolved".into(),
            Failure::TimedOut => "timed out".into(),
            Failure::BadResponse(what) => format!("bad HTTP response: {what}"),
            Failure::Io(e) => io_reason(e),
        }
    }
}

fn io_reason(e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "refused".into(),
        // A socket read timeout surfaces as EAGAIN (WouldBlock) on Linux.
        K::TimedOut | K::WouldBlock => "timed out".into(),
        K::HostUnreachable => "no route to host".into(),
        K::NetworkUnreachable => "network unreachable".into(),
        K::ConnectionReset => "reset".into(),
        K::UnexpectedEof => "connection closed before the response was complete".into(),
        _ => {
            // "No route to host (os error 113)" reads better without the number.
            let text = e.to_string();
            match text.rfind(" (os error ") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    }
}

fn remaining(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Failure::TimedOut)
    } else {
        Ok(left)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing

/// A duration such as `2s`, `500ms`, `1.5s`, `1m`: a positive decimal number and a unit (ms, s, m, h).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => return Err("missing unit (ms, s, m or h), e.g. 2s or 500ms".into()),
        _ => return Err(format!("unknown unit {unit:?} (want ms, s, m or h)")),
    };
    let value: f64 = number.parse().map_err(|_| format!("{number:?} is not a number"))?;
    let d = Duration::try_from_secs_f64(value * scale).map_err(|_| "out of range".to_string())?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

pub fn parse_target(s: &str) -> Result<Target, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err("want http://HOST[:PORT][/path], tcp://IP:PORT or udp://IP:PORT".into());
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" => parse_http(rest),
        "tcp" => parse_socket_addr(rest).map(Target::Tcp),
        "udp" => parse_socket_addr(rest).map(Target::Udp),
        "https" => Err("https is not supported (probe speaks plain HTTP)".into()),
        other => Err(format!("unsupported scheme {other:?} (want http, tcp or udp)")),
    }
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not IP:PORT (IPv6 as [ADDR]:PORT)"))?;
    if addr.port() == 0 {
        return Err("port 0".into());
    }
    Ok(addr)
}

fn parse_http(rest: &str) -> Result<Target, String> {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = path.split('#').next().unwrap_or_default();
    if authority.contains('@') {
        return Err("user info in URLs is not supported".into());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']').ok_or("unclosed [ in host")?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("{inside:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("junk after ]")?),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        let host = match host.parse::<Ipv4Addr>() {
            Ok(ip) => Host::Ip(IpAddr::V4(ip)),
            Err(_) if host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) => {
                Host::Name(host.to_string())
            }
            Err(_) => return Err(format!("{host:?} is neither an IP address nor a host name")),
        };
        (host, port)
    };
    let port = match port {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(format!("bad port {p:?}")),
        },
    };
    Ok(Target::Http {
        host,
        port,
        authority: authority.to_string(),
        path: request_path(path),
    })
}

/// The path as it goes on the request line: `/` when empty, with spaces, controls and non-ASCII percent-encoded
/// so that a path typed loosely (`/echo?msg=a b`) still makes a well-formed request.
fn request_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        out.push('/');
    }
    for b in path.bytes() {
        if b.is_ascii_graphic() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// TCP and UDP

fn tcp(addr: SocketAddr, timeout: Duration) -> Result<bool, Failure> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    let local = stream.local_addr()?;
    write_stdout(format!("connected to {addr} from {local}\n").as_bytes())?;
    Ok(true)
}

fn udp(addr: SocketAddr, payload: &[u8], deadline: Instant) -> Result<bool, Failure> {
    let any = match addr {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind((any, 0))?;
    // Connected, so the kernel reports an ICMP port unreachable as ECONNREFUSED on recv and filters other senders.
    socket.connect(addr)?;
    socket.send(payload)?;
    let mut buf = vec![0u8; 65536];
    socket.set_read_timeout(Some(remaining(deadline)?))?;
    let n = socket.recv(&mut buf)?;
    let mut reply = buf[..n].to_vec();
    if !reply.ends_with(b"\n") {
        reply.push(b'\n');
    }
    write_stdout(&reply)?;
    Ok(true)
}

fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

fn http(host: &Host, port: u16, authority: &str, path: &str, deadline: Instant) -> Result<bool, Failure> {
    let addrs = match host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Host::Name(name) => resolve(name, port, deadline)?,
    };
    // Like curl: try each address in turn while time remains, and report the last failure.
    let mut last = Failure::NotResolved;
    let mut stream = None;
    for addr in addrs {
        let left = remaining(deadline)?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Failure::Io(e),
        }
    }
    let Some(stream) = stream else {
        return Err(last);
    };
    let _ = stream.set_nodelay(true);
    let mut conn = DeadlineStream { stream, deadline };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: weft-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes())?;

    let mut out = TrackLast {
        inner: io::stdout().lock(),
        last: None,
    };
    let status = read_response(&mut BufReader::new(conn), &mut out)?;
    // End the body's output with a newline, so `/hostname` does not leave the shell prompt on the same line.
    if out.last.is_some_and(|b| b != b'\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if !(200..300).contains(&status) {
        let _ = writeln!(io::stderr(), "HTTP {status}");
    }
    Ok((200..400).contains(&status))
}

/// Resolves through std (getaddrinfo, so /etc/hosts and resolv.conf as glibc reads them). getaddrinfo cannot be
/// cancelled, so it runs on its own thread and the deadline is kept by waiting on a channel.
fn resolve(name: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, Failure> {
    let (tx, rx) = mpsc::channel();
    let name_owned = name.to_string();
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let _ = tx.send(
                (name_owned.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<_>>()),
            );
        })
        .map_err(Failure::Io)?;
    match rx.recv_timeout(remaining(deadline)?) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(Failure::NotResolved),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Failure::TimedOut),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Failure::NotResolved),
    }
}

/// A TCP stream whose every read and write is bounded by what is left until one deadline.
struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::from(io::ErrorKind::TimedOut))
        } else {
            Ok(left)
        }
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        self.stream.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Remembers the last byte written, to know whether output ended with a newline.
struct TrackLast<W> {
    inner: W,
    last: Option<u8>,
}

impl<W: Write> Write for TrackLast<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if n > 0 {
            self.last = buf.get(n - 1).copied();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One line of a response head, without its line ending; counts against `budget`.
fn read_line(r: &mut impl BufRead, budget: &mut usize) -> Result<String, Failure> {
    let mut line = Vec::new();
    let n = r.by_ref().take(*budget as u64).read_until(b'\n', &mut line)?;
    *budget -= n;
    if !line.ends_with(b"\n") {
        return Err(if *budget == 0 {
            Failure::BadResponse("head too large")
        } else {
            Failure::Io(io::ErrorKind::UnexpectedEof.into())
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Reads a response to a GET, copies its body to `out`, and returns the status. Interim 1xx responses are skipped.
pub fn read_response(r: &mut impl BufRead, out: &mut impl Write) -> Result<u16, Failure> {
    let (status, headers) = loop {
        let mut budget = RESPONSE_HEAD_LIMIT;
        let status_line = read_line(r, &mut budget)?;
        let mut parts = status_line.splitn(3, ' ');
        let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
            return Err(Failure::BadResponse("no status line"));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(Failure::BadResponse("not HTTP/1.x"));
        }
        let status = match code.parse::<u16>() {
            Ok(s) if (100..=999).contains(&s) && code.len() == 3 => s,
            _ => return Err(Failure::BadResponse("bad status code")),
        };
        let mut headers = Vec::new();
        loop {
            let line = read_line(r, &mut budget)?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').ok_or(Failure::BadResponse("bad header line"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        if status >= 200 {
            break (status, headers);
        }
    };
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());

    if status == 204 || status == 304 {
        return Ok(status);
    }
    if header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().ends_with("chunked")) {
        copy_chunked(r, out)?;
    } else if let Some(len) = header("content-length") {
        let len: u64 = len.parse().map_err(|_| Failure::BadResponse("bad Content-Length"))?;
        if io::copy(&mut r.by_ref().take(len), out)? != len {
            return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()));
        }
    } else {
        // No framing: the body runs until the server closes (we asked for Connection: close).
        io::copy(r, out)?;
    }
    Ok(status)
}

fn copy_chunked(r: &mut impl BufRead, out: &mut impl Write) -> Result<(), Failure> {
    loop {
        let mut budget = RESPONSE_HEAD_LIMIT;
        let line = read_line(r, &mut budget)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| Failure::BadResponse("bad chunk size"))?;
        if size == 0 {
            // Trailers, then the final blank line; a server that just closes here has still sent the whole body.
            while !read_line(r, &mut budget).unwrap_or_default().is_empty() {}
            return Ok(());
        }
        if io::copy(&mut r.by_ref().take(size), out)? != size {
            return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        if !read_line(r, &mut budget)?.is_empty() {
            return Err(Failure::BadResponse("chunk longer than its size"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        for bad in [
            "",
            "2",
            "s",
            "0s",
            "0.0ms",
            "-1s",
            "1.2.3s",
            "2 s",
            "2sec",
            "1e3s",
            "nans",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    fn http_target(host: Host, port: u16, authority: &str, path: &str) -> Target {
        Target::Http {
            host,
            port,
            authority: authority.into(),
            path: path.into(),
        }
    }

    #[test]
    fn targets() {
        let v4 = |s: &str| Host::Ip(s.parse().unwrap());
        assert_eq!(
            parse_target("http://10.0.0.1"),
            Ok(http_target(v4("10.0.0.1"), 80, "10.0.0.1", "/"))
        );
        assert_eq!(
            parse_target("http://10.0.0.1:8080/echo?msg=a b#frag"),
            Ok(http_target(v4("10.0.0.1"), 8080, "10.0.0.1:8080", "/echo?msg=a%20b"))
        );
        assert_eq!(
            parse_target("HTTP://[fd00::1]:81/x"),
            Ok(http_target(v4("fd00::1"), 81, "[fd00::1]:81", "/x"))
        );
        assert_eq!(
            parse_target("http://[::1]"),
            Ok(http_target(v4("::1"), 80, "[::1]", "/"))
        );
        assert_eq!(
            parse_target("http://web.default.svc?q"),
            Ok(http_target(
                Host::Name("web.default.svc".into()),
                80,
                "web.default.svc",
                "/?q"
            ))
        );
        assert_eq!(
            parse_target("tcp://10.0.0.1:80"),
            Ok(Target::Tcp("10.0.0.1:80".parse().unwrap()))
        );
        assert_eq!(
            parse_target("udp://[fd00::1]:53"),
            Ok(Target::Udp("[fd00::1]:53".parse().unwrap()))
        );
        for bad in [
            "",
            "10.0.0.1:80",
            "ftp://x",
            "https://x",
            "tcp://10.0.0.1",
            "tcp://host:80",
            "tcp://10.0.0.1:0",
            "udp://fd00::1:53",
            "udp://10.0.0.1:99999",
            "http://",
            "http://:80/",
            "http://a:b@h/",
            "http://h:0/",
            "http://h:x/",
            "http://[::1/",
            "http://[::1]x/",
            "http://[10.0.0.1]/",
            "http://fd00::1/",
            "http://bad host/",
        ] {
            assert!(parse_target(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    fn response(bytes: &[u8]) -> (Result<u16, Failure>, Vec<u8>) {
        let mut out = Vec::new();
        let status = read_response(&mut BufReader::new(bytes), &mut out);
        (status, out)
    }

    #[test]
    fn responses() {
        let (s, body) = response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more");
        assert_eq!((s.unwrap(), body.as_slice()), (200, b"hello".as_slice()));
        let (s, body) = response(b"HTTP/1.1 503 Service Unavailable\r\n\r\nuntil eof");
        assert_eq!((s.unwrap(), body.as_slice()), (503, b"until eof".as_slice()));
        let (s, body) =
            response(b"HTTP/1.1 103 Early\r\nLink: x\r\n\r\nHTTP/1.0 301 Moved\r\ncontent-length: 0\r\n\r\n");
        assert_eq!((s.unwrap(), body.as_slice()), (301, b"".as_slice()));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\nB\r\n, and world\r\n0\r\n\r\n";
        let (s, body) = response(chunked);
        assert_eq!((s.unwrap(), body.as_slice()), (200, b"hello, and world".as_slice()));
    }

    #[test]
    fn bad_responses() {
        for bad in [
            b"".as_slice(),
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello world\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1",
        ] {
            assert!(
                response(bad).0.is_err(),
                "{:?} should be rejected",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &vec![b'a'; RESPONSE_HEAD_LIMIT]].concat();
        assert!(matches!(response(&huge).0, Err(Failure::BadResponse("head too large"))));
    }

    #[test]
    fn reasons() {
        use io::ErrorKind as K;
        assert_eq!(Failure::Io(K::ConnectionRefused.into()).reason(), "refused");
        assert_eq!(Failure::Io(K::WouldBlock.into()).reason(), "timed out");
        assert_eq!(
            Failure::Io(io::Error::from_raw_os_error(libc::EHOSTUNREACH)).reason(),
            "no route to host"
        );
        assert_eq!(
            Failure::Io(io::Error::from_raw_os_error(libc::ENETUNREACH)).reason(),
            "network unreachable"
        );
        assert_eq!(
            Failure::Io(io::Error::from_raw_os_error(libc::ECONNRESET)).reason(),
            "reset"
        );
        assert_eq!(
            Failure::Io(io::Error::from_raw_os_error(libc::EACCES)).reason(),
            "Permission denied"
        );
        assert_eq!(Failure::NotResolved.reason(), "name not resolved");
    }
}
