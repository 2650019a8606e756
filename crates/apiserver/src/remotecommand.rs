//! `exec` and `attach` over Kubernetes' channel protocol on a WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`):
//! every binary message starts with its channel — 0 stdin, 1 stdout, 2 stderr, 3 the final `Status` (JSON),
//! 4 a terminal size (JSON), and in v5 255 "that channel is closed" (kubectl's stdin EOF). exec runs the command in
//! the pod's sandbox, on pipes or on a terminal (`tty`); attach streams the container's output from now on and,
//! for a container started with `stdin` or `tty`, writes the client's input to its stdin or terminal.

use crate::api::{Api, Call};
use crate::body::Body;
use crate::cluster::{Cluster, Start};
use crate::request::{Target, query_values};
use crate::status::ApiError;
use crate::upgrade::{Kind, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::Response;
use serde_json::{Value, json};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use weft_model::Snapshot;
use weft_model::k8s_openapi::api::core::v1::Pod;

pub const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;
/// After the command exits, how long its output is still forwarded (a background child may hold it open).
const DRAIN: Duration = Duration::from_secs(2);
const CHUNK: usize = 32 * 1024;
/// How long a terminal session waits for the client's first size before it starts the command.
const FIRST_SIZE: Duration = Duration::from_secs(1);

/// Which streams the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Streams {
    fn of(call: &Call) -> Result<Streams, ApiError> {
        let s = Streams {
            stdin: call.flag("stdin"),
            stdout: call.flag("stdout"),
            stderr: call.flag("stderr"),
            tty: call.flag("tty"),
        };
        if !(s.stdin || s.stdout || s.stderr) {
            return Err(ApiError::bad_request(
                "you must specify at least 1 of stdin, stdout, stderr",
            ));
        }
        Ok(s)
    }
}

/// `pods/NAME/exec?command=...&stdin=&stdout=&stderr=&tty=&container=`.
pub fn exec(api: &Api, call: &mut Call, snap: &Snapshot, target: &Target) -> Result<Response<Body>, ApiError> {
    let pod = crate::pods::pod(snap, target)?;
    let container = crate::pods::container(pod, call.param("container"))?;
    crate::pods::running(pod)?;
    let streams = Streams::of(call)?;
    let argv = query_values(&call.raw_query, "command");
    if argv.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let (cluster, pod) = (api.cluster.clone(), pod.clone());
    let (v5, response) = websocket_v5(call)?;
    crate::upgrade::spawn(call, move |io| async move {
        let ws = crate::upgrade::websocket(io).await;
        exec_session(
            ws,
            v5,
            streams,
            &Exec {
                cluster,
                pod,
                container,
                argv,
            },
        )
        .await;
    })?;
    Ok(response)
}

/// Negotiates the channel protocol: the 101 answer, and whether it is v5.
fn websocket_v5(call: &Call) -> Result<(bool, Response<Body>), ApiError> {
    match crate::upgrade::negotiate(call, PROTOCOLS, &[])? {
        (response, Kind::WebSocket(p)) => Ok((p == PROTOCOLS[0], response)),
        (_, Kind::Spdy(_)) => Err(ApiError::internal("SPDY negotiated without SPDY protocols")),
    }
}

/// `pods/NAME/attach`: the container's output from now on, and with `stdin` what the client types into its stdin
/// or terminal, until its run ends, the client leaves or the pod goes away.
pub fn attach(api: &Api, call: &mut Call, snap: &Snapshot, target: &Target) -> Result<Response<Body>, ApiError> {
    let pod = crate::pods::pod(snap, target)?;
    let container = crate::pods::container(pod, call.param("container"))?;
    crate::pods::running(pod)?;
    let streams = Streams::of(call)?;
    let input = match streams.stdin {
        false => None,
        true => match api.cluster.attach_input(pod, &container) {
            Some(input) => Some(input.map_err(|e| ApiError::internal(format!("attaching to {container}: {e}")))?),
            None => {
                return Err(ApiError::bad_request(format!(
                    "container {container} has no stdin to attach to: it was started without stdin: true (or \
                     stdinOnce and another session had it); attach without -i, or use exec"
                )));
            }
        },
    };
    let file = api
        .cluster
        .log_file(pod, &container, false)
        .ok_or_else(|| ApiError::bad_request(format!("container {container} has not started")))?;
    let follow = crate::pods::Follow::new(api.cluster.clone(), pod, file).until_restart(pod, &container);
    let (v5, response) = websocket_v5(call)?;
    crate::upgrade::spawn(call, move |io| async move {
        let ws = crate::upgrade::websocket(io).await;
        attach_session(ws, v5, follow, streams, input).await;
    })?;
    Ok(response)
}

async fn attach_session(
    ws: WebSocket,
    v5: bool,
    mut follow: crate::pods::Follow,
    streams: Streams,
    input: Option<crate::cluster::Input>,
) {
    let (sink, mut source) = ws.split();
    let (out, writer) = writer(sink);
    let channel = if streams.stdout { STDOUT } else { STDERR };
    // A terminal takes sizes on its own fd; the writer goes to the stdin pump.
    let terminal = input
        .as_ref()
        .filter(|i| i.terminal)
        .and_then(|i| i.writer.try_clone().ok())
        .map(OwnedFd::from);
    let mut stdin = input.map(|i| stdin_pump(Box::new(tokio::fs::File::from_std(i.writer))));
    // From the end: attach shows what the container writes from now on.
    follow.skip_to_end();
    loop {
        tokio::select! {
            more = follow.next() => match more {
                Some(bytes) => {
                    if out.send(frame(channel, &bytes)).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
            message = source.next() => match message {
                Some(Ok(Message::Binary(data))) => input_message(&data, &mut stdin, terminal.as_ref(), v5).await,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_) | Message::Frame(_))) => {}
                _ => return,
            },
        }
    }
    let _ = out
        .send(frame(
            ERROR,
            &status_bytes(&json!({"metadata": {}, "status": "Success"})),
        ))
        .await;
    drop(out);
    let _ = writer.await;
}

/// Writes what the client sends on stdin to `w`, in order; `w` is shut (EOF for a pipe) once the sender is
/// dropped and what it sent is written.
fn stdin_pump(mut w: Writer) -> mpsc::Sender<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if w.write_all(&chunk).await.is_err() || w.flush().await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    tx
}

/// Messages to the client go through one task that owns the sink; it closes the WebSocket when all senders are gone.
fn writer(mut sink: SplitSink<WebSocket, Message>) -> (mpsc::Sender<Message>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let task = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        crate::upgrade::close(&mut sink).await;
    });
    (tx, task)
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

fn status_bytes(status: &Value) -> Vec<u8> {
    serde_json::to_vec(status).unwrap_or_default()
}

/// What an exec session runs: `argv` in the pod's sandbox.
struct Exec {
    cluster: Arc<dyn Cluster>,
    pod: Pod,
    container: String,
    argv: Vec<String>,
}

async fn exec_session(ws: WebSocket, v5: bool, streams: Streams, exec: &Exec) {
    let argv = &exec.argv;
    let (sink, mut source) = ws.split();
    let (out, writer) = writer(sink);
    // kubectl sends the terminal's size as soon as the session opens: the terminal gets it before the command
    // starts, which would otherwise race it (`stty size` saying 0 0).
    let mut first = None;
    let mut size = None;
    if streams.tty {
        match tokio::time::timeout(FIRST_SIZE, source.next()).await {
            Ok(Some(Ok(Message::Binary(data)))) => match data.split_first() {
                Some((&RESIZE, json)) => size = serde_json::from_slice::<Size>(json).ok(),
                _ => first = Some(data.to_vec()),
            },
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(Some(Err(_)) | None) => return,
        }
    }
    let status = match Process::spawn(
        |start| exec.cluster.exec(&exec.pod, &exec.container, argv, start),
        streams,
        size,
    ) {
        Ok(process) => process
            .run(first, &mut source, &out, v5)
            .await
            .map(|exit| exit_status(exit, argv)),
        Err(e) => Some(json!({
            "metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
            "message": format!("error executing command {argv:?} in container: {e}"),
        })),
    };
    if let Some(status) = status {
        let _ = out.send(frame(ERROR, &status_bytes(&status))).await;
    }
    drop(out);
    let _ = writer.await;
}

/// The final Status as kubelet reports it; kubectl prints `command terminated with exit code N` and exits N.
fn exit_status(exit: std::io::Result<ExitStatus>, argv: &[String]) -> Value {
    let code = match exit {
        Ok(s) => s.code().or_else(|| s.signal().map(|n| 128 + n)).unwrap_or(1),
        Err(e) => {
            return json!({"metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
                          "message": format!("waiting for the command: {e}")});
        }
    };
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            argv.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A running command and its ends: pipes, or the master side of its terminal.
struct Process {
    child: tokio::process::Child,
    input: Option<Writer>,
    outputs: Vec<(u8, Reader)>,
    /// The terminal's master side, for resizes.
    terminal: Option<OwnedFd>,
}

impl Process {
    /// Starts the command through `exec` (what `Cluster::exec` does for a pod), on pipes or a terminal.
    fn spawn(
        exec: impl FnOnce(Start<'_>) -> std::io::Result<tokio::process::Child>,
        streams: Streams,
        size: Option<Size>,
    ) -> std::io::Result<Process> {
        // The command starts on a thread of the sandbox's: tokio's child needs this runtime there.
        let runtime = tokio::runtime::Handle::current();
        let spawn = move |command: Command| {
            let _entered = runtime.enter();
            tokio::process::Command::from(command).kill_on_drop(true).spawn()
        };
        let pipe = |wanted: bool| if wanted { Stdio::piped() } else { Stdio::null() };
        if !streams.tty {
            let start = move |mut command: Command| {
                command
                    .stdin(pipe(streams.stdin))
                    .stdout(pipe(streams.stdout))
                    .stderr(pipe(streams.stderr));
                spawn(command)
            };
            let mut child = exec(Box::new(start))?;
            let mut outputs: Vec<(u8, Reader)> = Vec::new();
            if let Some(o) = child.stdout.take() {
                outputs.push((STDOUT, Box::new(o)));
            }
            if let Some(e) = child.stderr.take() {
                outputs.push((STDERR, Box::new(e)));
            }
            let input = child.stdin.take().map(|i| Box::new(i) as Writer);
            return Ok(Process {
                child,
                input,
                outputs,
                terminal: None,
            });
        }
        let size = size.map(|s| nix::pty::Winsize {
            ws_row: s.height,
            ws_col: s.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(size.as_ref(), None).map_err(std::io::Error::from)?;
        let slave = pty.slave;
        let start = move |mut command: Command| {
            command
                .stdin(Stdio::from(slave.try_clone()?))
                .stdout(Stdio::from(slave.try_clone()?))
                .stderr(Stdio::from(slave));
            // SAFETY: only system calls between fork and exec. The terminal (already on fds 0-2) becomes the
            // controlling terminal of a new session, so the shell gets job control and ^C reaches it. (Unlike
            // exec on pipes, this one forks the supervisor: std has no setsid for posix_spawn.)
            unsafe {
                command.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            // The command, and with it our copies of the terminal's slave side, go once it started, so reading
            // the master ends when the command's do.
            spawn(command)
        };
        let child = exec(Box::new(start))?;
        let reader = tokio::fs::File::from_std(File::from(pty.master.try_clone()?));
        let writer = tokio::fs::File::from_std(File::from(pty.master.try_clone()?));
        let outputs: Vec<(u8, Reader)> = if streams.stdout {
            vec![(STDOUT, Box::new(reader))]
        } else {
            Vec::new()
        };
        let input = streams.stdin.then(|| Box::new(writer) as Writer);
        Ok(Process {
            child,
            input,
            outputs,
            terminal: Some(pty.master),
        })
    }

    /// Carries the streams until the command exits (its exit status) or the client leaves (None; the command
    /// is killed).
    async fn run(
        self,
        first: Option<Vec<u8>>,
        source: &mut SplitStream<WebSocket>,
        out: &mpsc::Sender<Message>,
        v5: bool,
    ) -> Option<std::io::Result<ExitStatus>> {
        let Process {
            mut child,
            input,
            outputs,
            terminal,
        } = self;
        let pumps: Vec<_> = outputs
            .into_iter()
            .map(|(channel, mut r)| {
                let out = out.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; CHUNK];
                    // A terminal's master reads EIO once the command is gone: the end, as EOF is for a pipe.
                    while let Ok(n @ 1..) = r.read(&mut buf).await {
                        if out.send(frame(channel, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        let mut stdin = input.map(stdin_pump);
        if let Some(data) = first {
            input_message(&data, &mut stdin, terminal.as_ref(), v5).await;
        }
        let exit = loop {
            tokio::select! {
                exit = child.wait() => break exit,
                message = source.next() => match message {
                    Some(Ok(Message::Binary(data))) => input_message(&data, &mut stdin, terminal.as_ref(), v5).await,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        let _ = child.kill().await;
                        return None;
                    }
                },
            }
        };
        drop(stdin);
        let _ = tokio::time::timeout(DRAIN, futures_util::future::join_all(pumps)).await;
        Some(exit)
    }
}

/// One message from the client: stdin data, a terminal size, or (v5) the end of stdin.
async fn input_message(data: &[u8], stdin: &mut Option<mpsc::Sender<Vec<u8>>>, terminal: Option<&OwnedFd>, v5: bool) {
    match data.split_first() {
        Some((&STDIN, rest)) => {
            if let Some(tx) = stdin {
                let _ = tx.send(rest.to_vec()).await;
            }
        }
        Some((&RESIZE, size)) => {
            if let Some(t) = terminal {
                resize(t, size);
            }
        }
        Some((&CLOSE, [STDIN, ..])) if v5 => *stdin = None,
        _ => {}
    }
}

/// A terminal size as kubectl sends it on channel 4.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Size {
    width: u16,
    height: u16,
}

fn resize(terminal: &OwnedFd, json: &[u8]) {
    let Ok(size) = serde_json::from_slice::<Size>(json) else {
        return;
    };
    let ws = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which outlives the call, from an open fd.
    unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: i32) -> Value {
        exit_status(
            Ok(ExitStatus::from_raw(code << 8)),
            &["sh".into(), "-c".into(), "exit".into()],
        )
    }

    #[test]
    fn exit_codes_become_kubelets_status() {
        assert_eq!(status(0), json!({"metadata": {}, "status": "Success"}));
        let failed = status(3);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert!(
            failed["message"]
                .as_str()
                .unwrap()
                .ends_with("[sh -c exit], exit code 3")
        );
        // Killed by SIGKILL: 128 + 9, as a shell reports it.
        let killed = exit_status(Ok(ExitStatus::from_raw(9)), &[]);
        assert_eq!(killed["details"]["causes"][0]["message"], "137");
    }

    #[test]
    fn frames_carry_their_channel_first() {
        assert_eq!(frame(STDERR, b"x"), Message::binary(vec![2, b'x']));
        let size: Size = serde_json::from_slice(br#"{"Width":100,"Height":30}"#).unwrap();
        assert_eq!((size.width, size.height), (100, 30));
    }

    #[tokio::test]
    async fn a_terminal_is_the_commands_controlling_tty_and_takes_resizes() {
        let mut command = Command::new("sh");
        command.args(["-c", "read line; stty size; test -t 0 && echo tty:$line"]);
        let streams = Streams {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        let mut p = Process::spawn(|start| start(command), streams, None).unwrap();
        resize(p.terminal.as_ref().unwrap(), br#"{"Width":91,"Height":17}"#);
        let mut input = p.input.take().unwrap();
        input.write_all(b"hi\n").await.unwrap();
        input.flush().await.unwrap();
        let (_, mut output) = p.outputs.pop().unwrap();
        let mut text = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = output.read(&mut buf).await {
            text.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains("17 91"), "{text}");
        assert!(text.contains("tty:hi"), "{text}");
        assert!(p.child.wait().await.unwrap().success());
    }

    #[test]
    fn at_least_one_stream_is_needed() {
        let (parts, ()) = hyper::Request::get("/x?stdin=false&tty=true")
            .body(())
            .unwrap()
            .into_parts();
        let call = Call::new(&parts, Default::default(), None);
        assert_eq!(Streams::of(&call).unwrap_err().code, 400);
        let (parts, ()) = hyper::Request::get("/x?stdout=1&stderr=true")
            .body(())
            .unwrap()
            .into_parts();
        let call = Call::new(&parts, Default::default(), None);
        assert_eq!(
            Streams::of(&call).unwrap(),
            Streams {
                stdin: false,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
    }
}
