//! Black-box tests of `weft serve` and `weft probe`: the real binary on 127.0.0.1, on ports picked by the kernel.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A TCP port nobody listens on (bound by the kernel, then released).
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `weft serve`, killed when dropped so a failing test leaves nothing behind.
struct Serve {
    child: Child,
    http: u16,
    udp: u16,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Serve {
    fn start() -> Serve {
        static N: AtomicUsize = AtomicUsize::new(0);
        let (http, udp) = (free_tcp_port(), free_udp_port());
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let tag = format!("serve-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let (stdout, stderr) = (dir.join(format!("{tag}.out")), dir.join(format!("{tag}.err")));
        // Files rather than pipes: a pipe nobody reads would fill and block the server's logging.
        let child = Command::new(WEFT)
            .args([
                "serve",
                "--bind",
                "127.0.0.1",
                "--http",
                &http.to_string(),
                "--udp",
                &udp.to_string(),
            ])
            .env("WEFT_POD_NAME", "pod-a")
            .env("WEFT_POD_NAMESPACE", "ns-a")
            .env("WEFT_NODE_NAME", "node-a")
            .env("WEFT_POD_IP", "10.9.8.7")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut serve = Serve {
            child,
            http,
            udp,
            stdout,
            stderr,
        };
        serve.wait_ready();
        serve
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "weft serve exited with {status}: {}",
                    fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            if get_raw(self.http, "/healthz").is_some_and(|r| r.ends_with("\r\n\r\nok")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "weft serve did not answer on port {} within 10s",
                self.http
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.stdout);
        let _ = fs::remove_file(&self.stderr);
    }
}

/// One request with `Connection: close`, the whole response as text; None when the server is not there yet.
fn get_raw(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

struct Probe {
    code: i32,
    stdout: String,
    stderr: String,
}

fn probe(args: &[&str]) -> Probe {
    let Output { status, stdout, stderr } = Command::new(WEFT).arg("probe").args(args).output().unwrap();
    Probe {
        code: status.code().expect("probe killed by a signal"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Reads one response off a kept-alive connection: head, then exactly Content-Length bytes (none after HEAD).
fn read_response(r: &mut impl BufRead, head_request: bool) -> (String, String) {
    let mut head = String::new();
    let mut len = 0;
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "connection closed mid-head: {head}"
        );
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; if head_request { 0 } else { len }];
    r.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[test]
fn http_identity_block() {
    let serve = Serve::start();
    let p = probe(&[&serve.url("/some/path?q=1")]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let keys: Vec<&str> = p.stdout.lines().map(|l| l.split(": ").next().unwrap()).collect();
    assert_eq!(
        keys,
        ["pod", "namespace", "node", "podIP", "client", "path"],
        "{}",
        p.stdout
    );
    assert!(
        p.stdout
            .starts_with("pod: pod-a\nnamespace: ns-a\nnode: node-a\npodIP: 10.9.8.7\n"),
        "{}",
        p.stdout
    );
    assert!(p.stdout.contains("\nclient: 127.0.0.1:"), "{}", p.stdout);
    assert!(p.stdout.ends_with("\npath: /some/path\n"), "{}", p.stdout);

    // Each request is logged to stdout as `<client> <method> <path> <status>`.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fs::read_to_string(&serve.stdout)
        .unwrap()
        .contains(" GET /some/path?q=1 200\n")
    {
        assert!(
            Instant::now() < deadline,
            "no log line: {}",
            fs::read_to_string(&serve.stdout).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = fs::read_to_string(&serve.stdout).unwrap();
    assert!(
        log.lines()
            .any(|l| l.starts_with("127.0.0.1:") && l.ends_with(" GET /some/path?q=1 200")),
        "{log}"
    );
    let err = fs::read_to_string(&serve.stderr).unwrap();
    assert!(
        err.contains(&format!("serving http on 127.0.0.1:{}\n", serve.http)),
        "{err}"
    );
    assert!(
        err.contains(&format!("serving udp on 127.0.0.1:{}\n", serve.udp)),
        "{err}"
    );
}

#[test]
fn http_paths() {
    let serve = Serve::start();
    let p = probe(&[&serve.url("/hostname")]);
    assert_eq!((p.code, p.stdout.as_str()), (0, "pod-a\n"), "{}", p.stderr);
    let p = probe(&[&serve.url("/echo?msg=a%20b")]);
    assert_eq!((p.code, p.stdout.as_str()), (0, "a b\n"), "{}", p.stderr);
    let p = probe(&[&serve.url("/healthz")]);
    assert_eq!((p.code, p.stdout.as_str()), (0, "ok\n"), "{}", p.stderr);
    let p = probe(&[&serve.url("/clientip")]);
    assert!(p.stdout.starts_with("127.0.0.1:"), "{}", p.stdout);

    let p = probe(&[&serve.url("/status/503")]);
    assert_eq!(p.code, 1);
    assert_eq!(p.stderr, "HTTP 503\n");
    // 3xx answered: exit 0, but the status is still shown.
    let p = probe(&[&serve.url("/status/302")]);
    assert_eq!((p.code, p.stderr.as_str()), (0, "HTTP 302\n"));
    let p = probe(&[&serve.url("/status/204")]);
    assert_eq!((p.code, p.stdout.as_str(), p.stderr.as_str()), (0, "", ""));
    let p = probe(&[&serve.url("/status/999")]);
    assert_eq!((p.code, p.stderr.as_str()), (1, "HTTP 400\n"));

    // Names go through the system resolver; localhost may come back as ::1 first, where nothing listens.
    let p = probe(&[&format!("http://localhost:{}/hostname", serve.http)]);
    assert_eq!((p.code, p.stdout.as_str()), (0, "pod-a\n"), "{}", p.stderr);
}

#[test]
fn http_keep_alive() {
    let serve = Serve::start();
    let stream = TcpStream::connect(("127.0.0.1", serve.http)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);

    w.write_all(b"GET /hostname HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut r, false);
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Server: weft-serve\r\n"),
        "{head}"
    );
    assert_eq!(body, "pod-a");

    // A request with a body, then a pipelined one: the body must be skipped, not read as the next request.
    w.write_all(b"POST /echo?msg=1 HTTP/1.1\r\nContent-Length: 4\r\n\r\nxxxxGET /echo?msg=2 HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).1, "1");
    assert_eq!(read_response(&mut r, false).1, "2");

    w.write_all(b"HEAD /hostname HTTP/1.1\r\n\r\n").unwrap();
    let (head, _) = read_response(&mut r, true);
    assert!(head.contains("Content-Length: 5\r\n"), "{head}");

    w.write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut r, false);
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert_eq!(body, "ok");
    let mut rest = Vec::new();
    assert_eq!(
        r.read_to_end(&mut rest).unwrap(),
        0,
        "server should close after Connection: close"
    );
}

#[test]
fn garbage_does_not_kill_serve() {
    let serve = Serve::start();
    let send = |bytes: &[u8]| {
        let mut s = TcpStream::connect(("127.0.0.1", serve.http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The server may answer and close before reading everything; a failed write is fine.
        let _ = s.write_all(bytes);
        let _ = s.shutdown(Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };

    assert!(send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(send(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(send(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert_eq!(send(b"\x00\xff\xfe garbage without a newline"), "");
    assert_eq!(send(b""), "");
    let big = [
        b"GET / HTTP/1.1\r\nX-Big: ".as_slice(),
        &vec![b'a'; 20 * 1024],
        b"\r\n\r\n",
    ]
    .concat();
    let reply = send(&big);
    assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 431 "), "{reply}");
    let endless_line = vec![b'A'; 64 * 1024];
    let reply = send(&endless_line);
    assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 431 "), "{reply}");

    // A client stalled mid-head holds only its own thread.
    let mut stalled = TcpStream::connect(("127.0.0.1", serve.http)).unwrap();
    stalled.write_all(b"GET / HTT").unwrap();

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(&[0xff; 2000], ("127.0.0.1", serve.udp)).unwrap();
    udp.send_to(b"", ("127.0.0.1", serve.udp)).unwrap();

    let p = probe(&[&serve.url("/hostname")]);
    assert_eq!((p.code, p.stdout.as_str()), (0, "pod-a\n"), "{}", p.stderr);
    let p = probe(&[&format!("udp://127.0.0.1:{}", serve.udp)]);
    assert_eq!((p.code, p.stdout.as_str()), (0, "pod-a\n"), "{}", p.stderr);
    drop(stalled);
}

#[test]
fn udp_and_tcp() {
    let serve = Serve::start();
    let target = format!("udp://127.0.0.1:{}", serve.udp);
    let p = probe(&[&target]);
    assert_eq!((p.code, p.stdout.as_str()), (0, "pod-a\n"), "{}", p.stderr);
    let p = probe(&[&target, "--send", "echo hello there"]);
    assert_eq!((p.code, p.stdout.as_str()), (0, "hello there\n"), "{}", p.stderr);
    let p = probe(&[&target, "--send", "anything else\n"]);
    assert_eq!((p.code, p.stdout.as_str()), (0, "anything else\n"), "{}", p.stderr);
    let p = probe(&[&target, "--send", "clientip"]);
    assert!(p.stdout.starts_with("127.0.0.1:"), "{}", p.stdout);

    let p = probe(&[&format!("tcp://127.0.0.1:{}", serve.http)]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let want = format!("connected to 127.0.0.1:{} from 127.0.0.1:", serve.http);
    assert!(p.stdout.starts_with(&want), "{}", p.stdout);
}

#[test]
fn refused() {
    let target = format!("tcp://127.0.0.1:{}", free_tcp_port());
    let p = probe(&[&target]);
    assert_eq!((p.code, p.stderr), (1, format!("probe: {target}: refused\n")));

    let p = probe(&[&format!("http://127.0.0.1:{}/", free_tcp_port())]);
    assert_eq!(p.code, 1);
    assert!(p.stderr.ends_with(": refused\n"), "{}", p.stderr);

    // Refused over UDP is the ICMP port unreachable, seen through a connected socket.
    let target = format!("udp://127.0.0.1:{}", free_udp_port());
    let p = probe(&[&target]);
    assert_eq!((p.code, p.stderr), (1, format!("probe: {target}: refused\n")));
}

#[test]
fn timeouts() {
    // A bound UDP socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("udp://{}", silent.local_addr().unwrap());
    let start = Instant::now();
    let p = probe(&[&target, "--timeout", "300ms"]);
    assert_eq!((p.code, p.stderr), (1, format!("probe: {target}: timed out\n")));
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());

    // A TCP listener whose backlog accepts the connection but that never answers the request.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("http://{}/", mute.local_addr().unwrap());
    let start = Instant::now();
    let p = probe(&[&target, "--timeout", "300ms"]);
    assert_eq!((p.code, p.stderr), (1, format!("probe: {target}: timed out\n")));
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
}

#[test]
fn bad_arguments() {
    for args in [
        &["ftp://10.0.0.1/"][..],
        &["10.0.0.1:80"],
        &["tcp://10.0.0.1"],
        &["tcp://name:80"],
        &["http://[::1/"],
        &["tcp://127.0.0.1:80", "--timeout", "5"],
        &["tcp://127.0.0.1:80", "--timeout", "0s"],
        &["tcp://127.0.0.1:80", "--send", "x"],
    ] {
        let p = probe(args);
        assert_eq!(p.code, 2, "{args:?}: {}", p.stderr);
        assert!(p.stderr.starts_with("probe: "), "{args:?}: {}", p.stderr);
    }
    let p = probe(&["ftp://10.0.0.1/"]);
    assert!(
        p.stderr.contains("\"ftp://10.0.0.1/\""),
        "the message names the target: {}",
        p.stderr
    );
}

#[test]
fn serve_bind_failure_names_the_port() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(WEFT)
        .args(["serve", "--bind", "127.0.0.1", "--http", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}
