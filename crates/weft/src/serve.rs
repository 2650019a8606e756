//! `weft serve`: the default workload of lab pods (in the spirit of agnhost netexec): HTTP/1.1 on TCP ports and an
//! echo service on UDP ports, both answering who and where this pod is and who the client appears to be.
//!
//! Std only, a thread per connection: lab traffic is a handful of probes, and hand-written code keeps the binary
//! small and every byte of the wire behaviour under our control.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::Context;

mod h2c;
mod websocket;

/// Limit on the request line plus headers; beyond it the client gets 431 and the connection is closed.
pub const HEAD_LIMIT: usize = 16 * 1024;
/// An idle (or stalled) connection is dropped after this long without a byte.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Beyond this many open connections new ones are closed at once, so a flood cannot exhaust threads.
const MAX_CONNECTIONS: usize = 4096;

#[derive(clap::Args)]
pub struct Args {
    /// TCP port to serve HTTP on (repeatable). With neither --http nor --udp, HTTP on port 80.
    #[arg(long = "http", value_name = "PORT")]
    http: Vec<u16>,
    /// UDP port to answer datagrams on (repeatable).
    #[arg(long = "udp", value_name = "PORT")]
    udp: Vec<u16>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// Answer as the Gateway API conformance suite's echo server (echo-basic) does: JSON with the request's
    /// path, host, method, protocol and headers and the pod's name and namespace (`/status/NNN` still answers
    /// NNN); with TLS_SERVER_CERT and TLS_SERVER_PRIVKEY (PEM files) set, HTTPS on port 8443 too (its
    /// HTTPS_PORT). What the lab runs for images whose name contains `echo`.
    #[arg(long)]
    echo: bool,
}

/// Who and where this pod is, from the environment the lab sets.
#[derive(Clone, Debug)]
pub struct Identity {
    pub pod: String,
    pub namespace: String,
    pub node: String,
    pub pod_ip: String,
    /// Answer as echo-basic (`--echo`).
    pub echo: bool,
}

impl Identity {
    fn from_env() -> Identity {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Identity {
            pod: var("WEFT_POD_NAME").unwrap_or_else(hostname),
            namespace: var("WEFT_POD_NAMESPACE").unwrap_or_else(|| "default".into()),
            node: var("WEFT_NODE_NAME").unwrap_or_default(),
            pod_ip: var("WEFT_POD_IP").unwrap_or_default(),
            echo: false,
        }
    }
}

/// The UTS hostname (the pod name under Kubernetes), without needing libc.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let http_ports = if args.http.is_empty() && args.udp.is_empty() {
        vec![80]
    } else {
        args.http
    };
    let id = Arc::new(Identity {
        echo: args.echo,
        ..Identity::from_env()
    });

    // Bind everything before serving anything, so a taken port fails the command instead of half-serving.
    let mut tcp = Vec::new();
    for port in http_ports {
        let addr = SocketAddr::new(args.bind, port);
        let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen for http on {addr}"))?;
        tcp.push((listener, addr, None));
    }
    if let Some(config) = args.echo.then(echo_tls).transpose()?.flatten() {
        let addr = SocketAddr::new(args.bind, ECHO_HTTPS_PORT);
        let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen for https on {addr}"))?;
        tcp.push((listener, addr, Some(Arc::new(config))));
    }
    let mut udp = Vec::new();
    for port in args.udp {
        let addr = SocketAddr::new(args.bind, port);
        let socket = UdpSocket::bind(addr).with_context(|| format!("cannot listen for udp on {addr}"))?;
        udp.push((socket, addr));
    }

    exit_on_termination_signals()?;

    let mut threads = Vec::new();
    for (listener, addr, tls) in tcp {
        let addr = listener.local_addr().unwrap_or(addr);
        let id = Arc::clone(&id);
        let scheme = if tls.is_some() { "https" } else { "http" };
        threads.push(spawn(format!("{scheme}-{}", addr.port()), move || {
            accept_loop(listener, id, tls)
        })?);
        log_err(format_args!("serving {scheme} on {addr}"));
    }
    for (socket, addr) in udp {
        let addr = socket.local_addr().unwrap_or(addr);
        let id = Arc::clone(&id);
        threads.push(spawn(format!("udp-{}", addr.port()), move || udp_loop(socket, id))?);
        log_err(format_args!("serving udp on {addr}"));
    }
    for t in threads {
        // The loops never return; a join error means a serving thread panicked, which is a bug worth a non-zero exit.
        if t.join().is_err() {
            anyhow::bail!("a serving thread panicked");
        }
    }
    Ok(())
}

/// echo-basic's HTTPS port.
const ECHO_HTTPS_PORT: u16 = 8443;

/// echo-basic's TLS server: the certificate chain and key of the PEM files TLS_SERVER_CERT and
/// TLS_SERVER_PRIVKEY name (none when either is unset).
fn echo_tls() -> anyhow::Result<Option<rustls::ServerConfig>> {
    let (Some(crt), Some(key)) = (
        std::env::var_os("TLS_SERVER_CERT"),
        std::env::var_os("TLS_SERVER_PRIVKEY"),
    ) else {
        return Ok(None);
    };
    let read = |path: &std::ffi::OsStr| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let key = weft_ingress::tls::from_pem(&read(&crt)?, &read(&key)?).context("TLS_SERVER_CERT, TLS_SERVER_PRIVKEY")?;
    let resolver = Arc::new(rustls::sign::SingleCertAndKey::from(key));
    let mut config = weft_ingress::tls::server_config(resolver)?;
    // HTTP/1.1 only: this server speaks nothing else.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(config))
}

/// As PID 1 of a container the kernel drops signals without a handler, so SIGTERM would be ignored and every pod
/// deletion would wait out its grace period. Block them in all threads and exit from a dedicated waiter instead.
fn exit_on_termination_signals() -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().context("blocking termination signals")?;
    spawn("signals".into(), move || {
        if set.wait().is_ok() {
            let _ = io::stdout().flush();
            std::process::exit(0);
        }
    })?;
    Ok(())
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> anyhow::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .with_context(|| format!("starting thread {name}"))
}

/// Log lines go through these rather than println!/eprintln!, which panic when the stream is closed.
fn log_out(args: std::fmt::Arguments) {
    let _ = writeln!(io::stdout().lock(), "{args}");
}

fn log_err(args: std::fmt::Arguments) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

/// Client-controlled text in a log line, with control characters escaped so a request cannot forge log lines.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

/// Serves the connections of `listener`, over TLS with `tls`.
fn accept_loop(listener: TcpListener, id: Arc<Identity>, tls: Option<Arc<rustls::ServerConfig>>) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends persist for a while: back off rather than spin.
                log_err(format_args!("accept: {e}"));
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if open.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::Relaxed);
            continue; // dropping the stream closes it
        }
        let guard = OpenGuard(Arc::clone(&open));
        let (id, tls) = (Arc::clone(&id), tls.clone());
        let spawned = thread::Builder::new().stack_size(256 * 1024).spawn(move || {
            let _guard = guard;
            let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
            let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
            let _ = stream.set_nodelay(true);
            match tls.map(rustls::ServerConnection::new) {
                None if h2c::opens_with_preface(&stream) => h2c::serve(stream, peer, &id),
                None => serve_connection(stream, peer, &id),
                Some(Ok(conn)) => serve_connection(rustls::StreamOwned::new(conn, stream), peer, &id),
                Some(Err(e)) => log_err(format_args!("{peer}: TLS: {e}")),
            }
        });
        if let Err(e) = spawned {
            log_err(format_args!("cannot start a connection thread: {e}"));
        }
    }
}

/// Decrements the open-connection count however the connection thread ends.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A parsed request line and headers.
#[derive(Debug, PartialEq)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub version: Version,
    pub headers: Vec<(String, String)>,
}

/// The HTTP version a request came in.
#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Version {
    Http10,
    /// Keep-alive by default.
    Http11,
    /// h2c ([`h2c`]): its connection is hyper's.
    Http2,
}

impl Version {
    /// As echo-basic reports it (Go's `Request.Proto`).
    fn proto(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
            Version::Http2 => "HTTP/2.0",
        }
    }
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn keep_alive(&self) -> bool {
        if self.version != Version::Http10 {
            !self.connection_has("close")
        } else {
            self.connection_has("keep-alive")
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum HeadError {
    /// More than [`HEAD_LIMIT`] bytes without the blank line ending the head.
    TooLarge,
    /// Not an HTTP/1.x request.
    Malformed,
    /// The peer went away, stalled past the timeout, or closed mid-head: nothing to answer.
    Closed,
}

/// Reads one request head. `Ok(None)` is a clean end of the connection between requests.
pub fn read_head(r: &mut impl BufRead) -> Result<Option<Head>, HeadError> {
    let mut used = 0;
    let mut lines: Vec<String> = Vec::new();
    loop {
        let room = HEAD_LIMIT - used;
        if room == 0 {
            return Err(HeadError::TooLarge);
        }
        let mut line = Vec::new();
        let n = match r.by_ref().take(room as u64).read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(_) if used == 0 => return Ok(None),
            Err(_) => return Err(HeadError::Closed),
        };
        used += n;
        if !line.ends_with(b"\n") {
            return match (n, used) {
                (0, 0) => Ok(None),
                _ if used >= HEAD_LIMIT => Err(HeadError::TooLarge),
                _ => Err(HeadError::Closed),
            };
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() {
            if lines.is_empty() {
                continue; // RFC 9112 §2.2: ignore blank lines before the request line
            }
            break;
        }
        lines.push(String::from_utf8_lossy(&line).into_owned());
    }

    let mut parts = lines[0].split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    let version = match version {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        _ => return Err(HeadError::Malformed),
    };
    if method.is_empty() || target.is_empty() || !method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HeadError::Malformed);
    }
    let mut headers = Vec::new();
    for line in &lines[1..] {
        let Some((name, value)) = line.split_once(':') else {
            return Err(HeadError::Malformed);
        };
        if name.is_empty() || name.ends_with([' ', '\t']) {
            return Err(HeadError::Malformed);
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Some(Head {
        method: method.to_string(),
        target: target.to_string(),
        version,
        headers,
    }))
}

/// What the handler decided; framing is added by [`write_response`].
#[derive(Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// Headers beyond the framing ones (echo-basic's `X-Echo-Set-Header`).
    pub headers: Vec<(String, String)>,
}

impl Response {
    fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }
}

/// The path of a request target, without the query, for origin-form (`/p?q`) and absolute-form (`http://h/p?q`).
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    let mut rest = target;
    for scheme in ["http://", "https://"] {
        if rest.len() >= scheme.len() && rest[..scheme.len()].eq_ignore_ascii_case(scheme) {
            rest = &rest[scheme.len()..];
            rest = rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    }
}

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`, as in form-encoded queries); malformed escapes
/// are kept literally rather than rejected, since this only feeds echo bodies.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match b[i] {
            b'%' => match (b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c))) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// The value of query parameter `key`, decoded.
fn query_param(query: Option<&str>, key: &str) -> Option<Vec<u8>> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k, true) == key.as_bytes()).then(|| percent_decode(v, true))
    })
}

/// Routes one request.
pub fn respond(head: &Head, peer: SocketAddr, id: &Identity) -> Response {
    let (path, query) = split_target(&head.target);
    match path {
        _ if id.echo && !path.starts_with("/status/") => echo(head, id),
        "/hostname" => Response::text(200, id.pod.as_str()),
        "/clientip" => Response::text(200, peer.to_string()),
        "/healthz" => Response::text(200, "ok"),
        "/echo" => Response::text(200, query_param(query, "msg").unwrap_or_default()),
        // agnhost netexec's `/header?key=NAME`: the value of a request header (what a proxy in front added).
        "/header" => {
            let key = query_param(query, "key").unwrap_or_default();
            let value = head.header(&String::from_utf8_lossy(&key)).unwrap_or_default();
            Response::text(200, value.to_string())
        }
        _ if path.starts_with("/status/") => match path["/status/".len()..].parse::<u16>() {
            Ok(code) if (100..=599).contains(&code) => Response::text(code, ""),
            _ => Response::text(400, "bad status code: want 100..599\n"),
        },
        _ => Response::text(
            200,
            format!(
                "pod: {}\nnamespace: {}\nnode: {}\npodIP: {}\nclient: {}\npath: {}\n",
                id.pod, id.namespace, id.node, id.pod_ip, peer, path
            ),
        ),
    }
}

/// echo-basic's answer: the request as JSON (header values by name, in the order they came).
fn echo(head: &Head, id: &Identity) -> Response {
    let mut headers = serde_json::Map::new();
    for (name, value) in &head.headers {
        // Go's canonical form, as echo-basic reports names (`x-foo` → `X-Foo`).
        let canonical = name
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                chars.next().map_or_else(String::new, |c| {
                    c.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                })
            })
            .collect::<Vec<_>>()
            .join("-");
        let entry = headers.entry(canonical).or_insert_with(|| serde_json::json!([]));
        if let Some(values) = entry.as_array_mut() {
            values.push(value.as_str().into());
        }
    }
    let body = serde_json::json!({
        "path": head.target,
        "host": head.header("host").unwrap_or_default(),
        "method": head.method,
        "proto": head.version.proto(),
        "headers": headers,
        "namespace": id.namespace,
        "ingress": "",
        "service": "",
        "pod": id.pod,
    });
    Response {
        headers: echo_set_headers(head),
        ..Response::text(200, body.to_string())
    }
}

/// The response headers a request asks echo-basic for: each `X-Echo-Set-Header` value is a list of
/// `Name: value` separated by `,` (how the suite checks response header filters).
fn echo_set_headers(head: &Head) -> Vec<(String, String)> {
    head.headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-echo-set-header"))
        .flat_map(|(_, list)| list.split(','))
        .filter_map(|pair| {
            let (name, value) = pair.split_once(':')?;
            let name = name.trim();
            let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            let value = value.trim();
            (valid && !value.bytes().any(|b| b.is_ascii_control())).then(|| (name.to_string(), value.to_string()))
        })
        .collect()
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Frames a response. 1xx, 204 and 304 carry no body and (per RFC 9110) no Content-Length; a 1xx also closes
/// the connection, since a client would otherwise wait forever for the final response that never comes.
pub fn write_response(w: &mut impl Write, resp: &Response, head_only: bool, keep_alive: bool) -> io::Result<bool> {
    let bodiless = resp.status < 200 || resp.status == 204 || resp.status == 304;
    let keep_alive = keep_alive && resp.status >= 200;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nServer: weft-serve\r\n",
        resp.status,
        reason(resp.status)
    );
    for (name, value) in &resp.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !bodiless {
        out.push_str(&format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
            resp.body.len()
        ));
    }
    out.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut out = out.into_bytes();
    if !bodiless && !head_only {
        out.extend_from_slice(&resp.body);
    }
    w.write_all(&out)?;
    w.flush()?;
    Ok(keep_alive)
}

/// Logs a request as `PEER METHOD TARGET STATUS`.
fn log_request(peer: SocketAddr, head: &Head, status: u16) {
    log_out(format_args!(
        "{peer} {} {} {status}",
        printable(&head.method),
        printable(&head.target)
    ));
}

/// Serves the requests of one connection (plain TCP, or TLS over it, handshaking as it is first read).
fn serve_connection(stream: impl Read + Write, peer: SocketAddr, id: &Identity) {
    let mut reader = BufReader::new(stream);
    loop {
        let head = match read_head(&mut reader) {
            Ok(Some(head)) => head,
            Ok(None) | Err(HeadError::Closed) => return,
            Err(e) => {
                let status = if e == HeadError::TooLarge { 431 } else { 400 };
                log_out(format_args!("{peer} - - {status}"));
                let _ = write_response(reader.get_mut(), &Response::text(status, reason(status)), false, false);
                return;
            }
        };
        if websocket::asks(&head) {
            log_request(peer, &head, 101);
            let switched = reader.get_mut().write_all(&websocket::switching(&head));
            if let Err(e) = switched.and_then(|()| websocket::echo(&mut reader)) {
                log_err(format_args!("{peer}: websocket: {e}"));
            }
            return;
        }
        let mut keep_alive = head.keep_alive();

        // Drain any request body so the next request on the connection starts where it should. Chunked bodies
        // are not decoded: answer, then close, which is always correct framing.
        if head.header("transfer-encoding").is_some() {
            keep_alive = false;
        } else if let Some(len) = head.header("content-length") {
            let Ok(len) = len.parse::<u64>() else {
                log_request(peer, &head, 400);
                let _ = write_response(
                    reader.get_mut(),
                    &Response::text(400, "bad Content-Length"),
                    false,
                    false,
                );
                return;
            };
            if head.version == Version::Http11
                && head
                    .header("expect")
                    .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            {
                let _ = reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            match io::copy(&mut (&mut reader).take(len), &mut io::sink()) {
                Ok(n) if n == len => {}
                _ => return,
            }
        }

        let resp = respond(&head, peer, id);
        log_request(peer, &head, resp.status);
        match write_response(reader.get_mut(), &resp, head.method == "HEAD", keep_alive) {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// UDP

/// The reply to one datagram, and a word naming what was asked (for the log).
pub fn udp_reply(payload: &[u8], peer: SocketAddr, id: &Identity) -> (Vec<u8>, &'static str) {
    let cmd = payload.trim_ascii();
    if cmd == b"hostname" {
        (id.pod.as_bytes().to_vec(), "hostname")
    } else if cmd == b"clientip" {
        (peer.to_string().into_bytes(), "clientip")
    } else if cmd == b"echo" {
        (Vec::new(), "echo")
    } else if let Some(rest) = cmd.strip_prefix(b"echo ") {
        (rest.to_vec(), "echo")
    } else {
        (payload.to_vec(), "raw")
    }
}

fn udp_loop(socket: UdpSocket, id: Arc<Identity>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) => {
                log_err(format_args!("udp receive: {e}"));
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let (reply, what) = udp_reply(&buf[..n], peer, &id);
        match socket.send_to(&reply, peer) {
            Ok(_) => log_out(format_args!("{peer} UDP {what} {}", reply.len())),
            Err(e) => log_err(format_args!("udp reply to {peer}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            pod: "pod-a".into(),
            namespace: "ns".into(),
            node: "node-1".into(),
            pod_ip: "10.0.0.5".into(),
            echo: false,
        }
    }

    fn peer() -> SocketAddr {
        "10.1.2.3:4567".parse().unwrap()
    }

    #[test]
    fn echo_answers_as_the_conformance_suites_echo_server() {
        let head =
            read_head(&mut &b"GET /v2/x?a=b HTTP/1.1\r\nHost: gw.example\r\nx-echo: one\r\nX-Echo: two\r\n\r\n"[..])
                .unwrap()
                .unwrap();
        let id = Identity { echo: true, ..id() };
        let answer: serde_json::Value = serde_json::from_slice(&respond(&head, peer(), &id).body).unwrap();
        assert_eq!(answer["path"], "/v2/x?a=b");
        assert_eq!(answer["host"], "gw.example");
        assert_eq!(answer["method"], "GET");
        assert_eq!(answer["headers"]["X-Echo"], serde_json::json!(["one", "two"]));
        assert_eq!(
            (answer["pod"].as_str(), answer["namespace"].as_str()),
            (Some("pod-a"), Some("ns"))
        );
        let status = read_head(&mut &b"GET /status/503 HTTP/1.1\r\n\r\n"[..])
            .unwrap()
            .unwrap();
        assert_eq!(respond(&status, peer(), &id).status, 503);
    }

    #[test]
    fn echo_sets_the_response_headers_a_request_asks_for() {
        let head = read_head(
            &mut &b"GET / HTTP/1.1\r\nX-Echo-Set-Header: X-Header-Set: one,X-Header-Add:two, bad name: x\r\n\r\n"[..],
        )
        .unwrap()
        .unwrap();
        let id = Identity { echo: true, ..id() };
        let response = respond(&head, peer(), &id);
        assert_eq!(
            response.headers,
            [
                ("X-Header-Set".into(), "one".into()),
                ("X-Header-Add".into(), "two".into())
            ]
        );
        let mut out = Vec::new();
        write_response(&mut out, &response, false, true).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("\r\nX-Header-Set: one\r\n"));
    }

    fn head(bytes: &[u8]) -> Result<Option<Head>, HeadError> {
        read_head(&mut BufReader::new(bytes))
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b", false), b"a b");
        assert_eq!(percent_decode("a+b", true), b"a b");
        assert_eq!(percent_decode("a+b", false), b"a+b");
        assert_eq!(percent_decode("%41%6a%4A", false), b"AjJ");
        // Malformed or truncated escapes stay as they are.
        assert_eq!(percent_decode("100%", false), b"100%");
        assert_eq!(percent_decode("%4", false), b"%4");
        assert_eq!(percent_decode("%zz%", false), b"%zz%");
        assert_eq!(percent_decode("%ff", false), [0xff]);
        assert_eq!(percent_decode("é%C3%A9", false), "éé".as_bytes());
    }

    #[test]
    fn targets_and_queries() {
        assert_eq!(split_target("/echo?msg=x"), ("/echo", Some("msg=x")));
        assert_eq!(split_target("/"), ("/", None));
        assert_eq!(split_target("http://h:8080/hostname?a"), ("/hostname", Some("a")));
        assert_eq!(split_target("HTTP://h"), ("/", None));
        assert_eq!(split_target("*"), ("*", None));
        assert_eq!(query_param(Some("a=1&msg=hi%21&msg=no"), "msg"), Some(b"hi!".to_vec()));
        assert_eq!(query_param(Some("msg"), "msg"), Some(Vec::new()));
        assert_eq!(query_param(Some("x=1"), "msg"), None);
        assert_eq!(query_param(None, "msg"), None);
    }

    #[test]
    fn reads_heads() {
        let h = head(b"\r\nGET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, close\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.method.as_str(), h.target.as_str(), h.version),
            ("GET", "/x", Version::Http11)
        );
        assert_eq!(h.header("HOST"), Some("a"));
        assert!(!h.keep_alive());
        let h = head(b"GET / HTTP/1.0\nConnection: keep-alive\n\n").unwrap().unwrap();
        assert!(h.keep_alive());
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive());
        assert!(head(b"GET / HTTP/1.1\r\n\r\n").unwrap().unwrap().keep_alive());
    }

    #[test]
    fn rejects_bad_heads() {
        assert_eq!(head(b""), Ok(None));
        assert_eq!(head(b"GET / HTTP/1.1\r\nHost"), Err(HeadError::Closed));
        assert_eq!(head(b"\x16\x03\x01garbage\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(head(b"GET /  HTTP/1.1\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(head(b"GET / HTTP/2\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(head(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(head(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), Err(HeadError::Malformed));
        let big = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; HEAD_LIMIT], b"\r\n\r\n"].concat();
        assert_eq!(head(&big), Err(HeadError::TooLarge));
        assert_eq!(head(&[b'\n'; HEAD_LIMIT + 1]), Err(HeadError::TooLarge));
        let no_newline = vec![b'x'; HEAD_LIMIT + 10];
        assert_eq!(head(&no_newline), Err(HeadError::TooLarge));
    }

    fn get(target: &str) -> Response {
        let h = Head {
            method: "GET".into(),
            target: target.into(),
            version: Version::Http11,
            headers: vec![],
        };
        respond(&h, peer(), &id())
    }

    #[test]
    fn routes() {
        assert_eq!(
            get("/some/where?q=1"),
            Response::text(
                200,
                "pod: pod-a\nnamespace: ns\nnode: node-1\npodIP: 10.0.0.5\nclient: 10.1.2.3:4567\npath: /some/where\n"
            )
        );
        assert_eq!(get("/hostname"), Response::text(200, "pod-a"));
        assert_eq!(get("/clientip"), Response::text(200, "10.1.2.3:4567"));
        assert_eq!(get("/healthz"), Response::text(200, "ok"));
        assert_eq!(get("/echo?msg=a%20b"), Response::text(200, "a b"));
        let forwarded = Head {
            method: "GET".into(),
            target: "/header?key=x-forwarded-for".into(),
            version: Version::Http11,
            headers: vec![("X-Forwarded-For".into(), "172.18.0.100".into())],
        };
        assert_eq!(respond(&forwarded, peer(), &id()), Response::text(200, "172.18.0.100"));
        assert_eq!(get("/header?key=x-forwarded-for"), Response::text(200, ""));
        assert_eq!(get("/status/503").status, 503);
        assert_eq!(get("/status/100").status, 100);
        assert_eq!(get("/status/600").status, 400);
        assert_eq!(get("/status/99").status, 400);
        assert_eq!(get("/status/abc").status, 400);
        assert_eq!(get("/status/").status, 400);
    }

    #[test]
    fn frames_responses() {
        let mut out = Vec::new();
        assert!(write_response(&mut out, &Response::text(200, "hi"), false, true).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nServer: weft-serve\r\n"), "{text}");
        assert!(
            text.contains("Content-Length: 2\r\n") && text.ends_with("keep-alive\r\n\r\nhi"),
            "{text}"
        );

        let mut out = Vec::new();
        write_response(&mut out, &Response::text(200, "hi"), true, true).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .ends_with("Content-Length: 2\r\nConnection: keep-alive\r\n\r\n")
        );

        let mut out = Vec::new();
        assert!(!write_response(&mut out, &Response::text(101, ""), false, true).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains("Content-Length") && text.ends_with("Connection: close\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn udp_replies() {
        assert_eq!(udp_reply(b"hostname\n", peer(), &id()), (b"pod-a".to_vec(), "hostname"));
        assert_eq!(udp_reply(b"clientip", peer(), &id()).0, b"10.1.2.3:4567");
        assert_eq!(udp_reply(b"echo hello world\n", peer(), &id()).0, b"hello world");
        assert_eq!(udp_reply(b"echo", peer(), &id()).0, b"");
        assert_eq!(udp_reply(b" other \n", peer(), &id()), (b" other \n".to_vec(), "raw"));
        assert_eq!(udp_reply(b"", peer(), &id()).0, b"");
    }

    #[test]
    fn log_text_is_escaped() {
        assert_eq!(printable("/a\x1b[2J\u{7f}"), "/a\\u{1b}[2J\\u{7f}");
    }
}
