//! `weft ui`: a picture of the lab in a browser. An HTTP server on 127.0.0.1 serves one page (bundled in the
//! binary: no network) and its data: the cluster from the lab's API (`view`), the flows of every node's agent as
//! `weft observe` merges them, and `weft trace`'s explanation of a clicked flow. The page polls once a second.

mod view;

use crate::observe;
use anyhow::{Context, Result};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_agent::flows::Flow;
use weft_lab::spec::Paths;
use weft_model::Snapshot;

const PAGE: &str = include_str!("page.html");
/// How often the cluster and the agents are read again.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(clap::Args)]
pub struct Args {
    /// The port on 127.0.0.1 to serve on (0: any free one; the URL is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The agents' HTTP port (weft agent --metrics-address).
    #[arg(long, default_value_t = 9654)]
    agent_port: u16,
    /// How many of the newest flows the page gets.
    #[arg(long, default_value_t = 300)]
    keep: usize,
}

/// What the refresher last read, for every request to share.
#[derive(Default)]
struct State {
    snapshot: Option<Arc<Snapshot>>,
    cluster: Value,
    flows: VecDeque<Flow>,
    /// Why the last refresh failed, shown on the page.
    error: Option<String>,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", args.port))
        .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    listener.set_nonblocking(true)?;
    println!("weft ui: http://{}/", listener.local_addr()?);
    let state = Arc::new(Mutex::new(State::default()));
    {
        let (state, paths) = (state.clone(), paths.clone());
        std::thread::spawn(move || refresh(&paths, &args, &state));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Tokio's listener registers with the runtime: made inside it.
    runtime.block_on(async { serve(tokio::net::TcpListener::from_std(listener)?, paths.clone(), state).await })?;
    Ok(0)
}

/// Reads the cluster and each agent's new flows (after the last `seq` seen of it) every second.
fn refresh(paths: &Paths, args: &Args, state: &Mutex<State>) {
    let mut seen: HashMap<String, u64> = HashMap::new();
    loop {
        let started = Instant::now();
        let outcome = (|| -> Result<(Arc<Snapshot>, Vec<Flow>)> {
            let snap = Arc::new(crate::objects::snapshot(paths)?);
            let mut flows = Vec::new();
            for agent in observe::agents(paths, false, args.agent_port)? {
                let after = seen.get(agent.node()).copied().unwrap_or(0);
                let new = agent.flows(args.agent_port, &format!("after={after}"))?;
                if let Some(last) = new.last() {
                    seen.insert(agent.node().to_string(), last.seq);
                }
                flows.extend(new);
            }
            Ok((snap, flows))
        })();
        {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            match outcome {
                Ok((snap, mut flows)) => {
                    s.cluster = view::cluster(&snap);
                    s.snapshot = Some(snap);
                    flows.sort_by_key(|f| (f.time, f.node.clone(), f.seq));
                    s.flows.extend(flows);
                    let excess = s.flows.len().saturating_sub(args.keep);
                    s.flows.drain(..excess);
                    s.error = None;
                }
                Err(e) => s.error = Some(format!("{e:#}")),
            }
        }
        std::thread::sleep(REFRESH.saturating_sub(started.elapsed()));
    }
}

async fn serve(listener: tokio::net::TcpListener, paths: Paths, state: Arc<Mutex<State>>) -> Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let (paths, state) = (paths.clone(), state.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (paths, state) = (paths.clone(), state.clone());
                async move { Ok::<_, std::convert::Infallible>(answer(req, paths, state).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            // A browser closing its connection is no error of ours.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

async fn answer(req: Request<Incoming>, paths: Paths, state: Arc<Mutex<State>>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into());
    }
    // The apiserver's query decoding (percent-escapes, `+`).
    let query = weft_apiserver::request::query(req.uri().query());
    match req.uri().path() {
        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE.into()),
        "/api/state" => {
            let body = {
                let s = state.lock().unwrap_or_else(|e| e.into_inner());
                json!({"cluster": s.cluster, "flows": s.flows, "error": s.error})
            };
            reply(StatusCode::OK, "application/json", body.to_string())
        }
        "/api/trace" => {
            let snapshot = state.lock().unwrap_or_else(|e| e.into_inner()).snapshot.clone();
            let (Some(source), Some(destination), Some(snap)) =
                (query.get("source"), query.get("destination"), snapshot)
            else {
                let body = json!({"error": "source and destination wanted (and the cluster read)"});
                return reply(StatusCode::BAD_REQUEST, "application/json", body.to_string());
            };
            let (source, destination) = (source.clone(), destination.clone());
            // The trace may look into a node's namespace and nftables: off the async thread.
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let _ = tx.send(crate::trace::explain(&paths, &snap, &source, &destination, "default"));
            });
            match rx.await {
                Ok(Ok(explanation)) => reply(StatusCode::OK, "application/json", explanation.json().to_string()),
                Ok(Err(e)) => {
                    let body = json!({"error": format!("{e:#}")});
                    reply(StatusCode::UNPROCESSABLE_ENTITY, "application/json", body.to_string())
                }
                Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "trace failed\n".into()),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    response
}
