//! The reverse proxy: each request is routed by the current table (loaded once per request, so a swap never
//! waits on requests and requests never wait on a swap) and forwarded to one of the Service's endpoints (HTTP/1.1,
//! through this thread's keep-alive pool (`pool`), or what `backend-protocol` asks for: see `backend`); the path
//! goes unchanged, the client's address and the original host, scheme and port go in X-Forwarded-* headers. Requests no rule takes get the default backend's 404
//! (`/healthz` 200). HTTP/1.1 upgrades (WebSockets) are passed through, and so are HTTP/2 WebSockets (see
//! `connect`). A route's annotations (see
//! `annotations`) may refuse clients, redirect, limit the body, rewrite the path and set timeouts, and a canary
//! Ingress may take some of its requests; `guards` runs their CORS, limit and authentication checks, `affinity`
//! puts a session first among the endpoints, and `errors` replaces the answers `custom-http-errors` lists.

use crate::affinity::Attempt;
use crate::annotations::{Annotations, BackendProtocol};
use crate::backend::{self, UpstreamClient, Upstreams};
pub use crate::body::Body;
use crate::body::Incoming;
use crate::body::{BoxError, Idle, OnEnd, Stalled};
use crate::connect;
use crate::gateway::retry::Retry;
use crate::metrics::{Metrics, RouteMetrics};
use crate::path::Kind;
use crate::path::PathRule;
use crate::pool::{self, Lease};
use crate::table::{Table, Target};
use crate::upgrade::OnUpgrade;
use crate::upstream::Upstream;
use crate::{errors, guards, host};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Full, LengthLimitError, Limited};
use hyper::body::Body as _;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long to wait for an upstream's TCP connection. Connects inside a cluster take well under a millisecond; a
/// SYN to a pod that is already gone (its endpoint not yet out of the table) is never answered, and the request
/// is better tried on the next endpoint soon than after ingress-nginx's 5 s.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Endpoints a request whose body the proxy holds whole is tried on when one fails before its response head: any
/// request after a connect error (it never reached the endpoint), an idempotent one also after a pooled
/// connection the endpoint closed as the request went out (as a terminating pod does): ingress-nginx's
/// proxy-next-upstream "error" with proxy-next-upstream-tries 3.
const TRIES: usize = 3;
/// The largest request body read whole before it is sent, so that it can be sent again (to the next endpoint, or
/// by an HTTPRoute's retries); larger ones stream through as they come. nginx buffers up to 16 KiB in memory.
const REPLAY_LIMIT: u64 = 64 << 10;
/// Where ACME HTTP-01 challenges are answered: never redirected to HTTPS (the certificate does not exist yet).
pub(crate) const ACME_CHALLENGE: &str = "/.well-known/acme-challenge/";

/// The connection a request came on.
#[derive(Clone, Debug)]
pub struct Conn {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// The TLS server name the client asked for (SNI).
    pub sni: Option<Arc<str>>,
}

pub struct Proxy {
    table: Arc<ArcSwap<Table>>,
    metrics: Arc<Metrics>,
    access_log: bool,
    /// Connections start with a PROXY protocol header (see `proxy_protocol`).
    proxy_protocol: bool,
    /// Terminating: HTTP/1.1 keep-alive connections are closed after their next response (`drain`).
    draining: AtomicBool,
    /// How long a connection may wait for its next request, and a request head take to come once begun.
    timeouts: ClientTimeouts,
}

/// How long a client may keep a connection without a request, and take to send a request's head: nginx's
/// `keepalive_timeout` and `client_header_timeout` (ingress-nginx's `keep-alive` and `client-header-timeout`),
/// whose defaults these are. Without them, connections that never finish a head (or never send one) would be
/// held forever.
#[derive(Clone, Copy, Debug)]
pub struct ClientTimeouts {
    /// An idle connection (new, or between requests) is closed after this, without an answer.
    pub idle: Duration,
    /// A request head begun and not finished in this time is answered 408 and its connection closed.
    pub head: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> ClientTimeouts {
        ClientTimeouts {
            idle: Duration::from_secs(75),
            head: Duration::from_secs(60),
        }
    }
}

impl Proxy {
    /// A proxy routing by `table`; requests no route takes count in `metrics` (routes have their own).
    pub fn new(table: Arc<ArcSwap<Table>>, metrics: Arc<Metrics>) -> Proxy {
        Proxy {
            table,
            metrics,
            access_log: false,
            proxy_protocol: false,
            draining: AtomicBool::new(false),
            timeouts: ClientTimeouts::default(),
        }
    }

    /// The client for upstreams of `protocol` whose connections time out after `connect` (none: the default):
    /// one per thread, each with its keep-alive pool, so that on a worker thread's runtime (see
    /// `server::bind_shared`) a request, its upstream connection and that connection's task stay on the thread.
    fn client(&self, protocol: BackendProtocol, connect: Option<Duration>) -> UpstreamClient {
        thread_local! {
            static CLIENTS: RefCell<HashMap<(BackendProtocol, Duration), UpstreamClient>> = RefCell::default();
        }
        let connect = connect.unwrap_or(CONNECT_TIMEOUT);
        CLIENTS.with_borrow_mut(|clients| {
            clients
                .entry((protocol, connect))
                .or_insert_with(|| backend::client(protocol, connect))
                .clone()
        })
    }

    /// The metrics of requests no route takes.
    pub(crate) fn unrouted(&self) -> Arc<RouteMetrics> {
        self.metrics.unrouted.clone()
    }

    /// Logs every request (`--access-log`).
    pub fn with_access_log(mut self, on: bool) -> Proxy {
        self.access_log = on;
        self
    }

    /// Expects a PROXY protocol header on every connection (`--proxy-protocol`).
    pub fn with_proxy_protocol(mut self, on: bool) -> Proxy {
        self.proxy_protocol = on;
        self
    }

    pub fn proxy_protocol(&self) -> bool {
        self.proxy_protocol
    }

    /// Other limits for idle connections and slow request heads than nginx's defaults.
    pub fn with_client_timeouts(mut self, timeouts: ClientTimeouts) -> Proxy {
        self.timeouts = timeouts;
        self
    }

    pub(crate) fn client_timeouts(&self) -> ClientTimeouts {
        self.timeouts
    }

    /// From now on, ends each HTTP/1.1 connection after its next response (`Connection: close`), while the
    /// listeners still serve: during the lameduck period clients move to other replicas between two requests,
    /// instead of having a keep-alive connection closed under a request they are sending when the listeners
    /// close. (HTTP/2 clients get a GOAWAY then, which tells them which streams to retry.)
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub async fn handle(&self, request: Request<Incoming>, conn: &Conn) -> Response<Body> {
        let start = Instant::now();
        let http1 = request.version() < Version::HTTP_2;
        let asked = self.access_log.then(|| {
            (
                request.method().clone(),
                authority(&request),
                request.uri().clone(),
                request.version(),
            )
        });
        let (mut response, metrics) = self.respond(request, conn).await;
        if http1 && self.draining.load(Ordering::Relaxed) && response.status() != StatusCode::SWITCHING_PROTOCOLS {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let took = start.elapsed();
        metrics.record(response.status().as_u16(), took);
        if let Some((method, host, uri, version)) = asked {
            tracing::info!(
                target: "access",
                client = %conn.client.ip(),
                %method,
                %host,
                uri = %uri,
                version = ?version,
                status = response.status().as_u16(),
                ingress = %metrics.key.0,
                took_us = took.as_micros(),
            );
        }
        response
    }

    /// The response, and the metrics of the route that made it.
    async fn respond(&self, mut request: Request<Incoming>, conn: &Conn) -> (Response<Body>, Arc<RouteMetrics>) {
        let authority = authority(&request);
        let name = host::of_authority(&authority);
        let table = self.table.load();
        // Gateways' listener ports are pod ports of their own (see gateway::provision).
        if let Some(port) = table.gateways().port(conn.local.port()).cloned() {
            drop(table);
            return self.respond_gateway(port, request, conn).await;
        }
        if request.version() == Version::HTTP_2 && misdirected(&table, conn, &name) {
            let response = local(StatusCode::MISDIRECTED_REQUEST, "421 Misdirected Request\n");
            return (response, self.metrics.unrouted.clone());
        }
        let path = request.uri().path();
        let Some((rule, route)) = table.lookup(&name, path) else {
            return (default_backend(path), self.metrics.unrouted.clone());
        };
        let metrics = route.metrics.clone();
        let settings = route.annotations.clone();
        if !settings.admits(conn.client.ip()) {
            return (local(StatusCode::FORBIDDEN, "403 Forbidden\n"), metrics);
        }
        if route.ssl_redirect && !conn.tls && !path.starts_with(ACME_CHALLENGE) {
            return (redirect_to_https(&name, request.uri()), metrics);
        }
        if let Some(root) = settings.app_root.as_ref().filter(|_| path == "/") {
            // Absolute, as ingress-nginx's `return 302 $scheme://$http_host<app-root>`.
            let scheme = if conn.tls { "https" } else { "http" };
            let location = HeaderValue::try_from(format!("{scheme}://{authority}{}", root.to_str().unwrap_or("/")));
            return match location {
                Ok(location) => (redirect(StatusCode::FOUND, location), metrics),
                Err(_) => (local(StatusCode::BAD_REQUEST, "400 Bad Request\n"), metrics),
            };
        }
        if let Some(to) = &settings.redirect {
            return (redirect(to.code, to.location.clone()), metrics);
        }
        let mut passed = match guards::check(route, &request, conn.client.ip()) {
            Ok(passed) => passed,
            Err(response) => return (*response, metrics),
        };
        if too_large(request.headers(), settings.body_limit) {
            return (too_large_response(), metrics);
        }
        let upstream_path = upstream_path(rule, &settings, request.uri());
        // A canary takes the requests its split says; the main route's settings apply to them too.
        let target = match &route.canary {
            Some(canary) if canary.split.takes(request.headers(), roll(canary.split.weight_total)) => &canary.target,
            _ => &route.target,
        };
        // The `default-backend` annotation's Service takes the requests of a backend without endpoints.
        let fallback = match &route.fallback {
            Some(Target::Service(fallback)) => Some(fallback.clone()),
            _ => None,
        };
        let upstream = match (target, &fallback) {
            (Target::Service(upstream), Some(fallback)) if upstream.endpoints().is_empty() => fallback.clone(),
            (Target::Unavailable(_), Some(fallback)) => fallback.clone(),
            (Target::Service(upstream), _) => upstream.clone(),
            (Target::Unavailable(why), None) => {
                tracing::debug!(ingress = %route.ingress, %why, "503");
                return (
                    local(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable\n"),
                    metrics,
                );
            }
        };
        // A session cookie's default path is the matched one (not a regex's text).
        let matched = settings
            .affinity
            .as_ref()
            .and(rule)
            .filter(|r| r.kind != Kind::Regex)
            .map(|r| r.path.clone());
        let failed = (!settings.custom_errors.is_empty())
            .then(|| errors::failed(&mut request, &route.ingress, &upstream.service));
        drop(table);
        if let Err(response) = passed.authenticate(request.headers()).await {
            return (*response, metrics);
        }
        if upstream.endpoints().is_empty() {
            let response = local(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable: no ready endpoints\n",
            );
            return (response, metrics);
        }
        let forward = Forward {
            upstream: &upstream,
            authority: &authority,
            path: upstream_path,
            settings: &settings,
            matched: matched.as_deref(),
            tls_client: passed.client.take(),
            metrics: &metrics,
            retry: None,
        };
        let mut response = self.forward(request.map(RequestBody::Unread), forward, conn).await;
        if let Some(failed) = failed.filter(|_| settings.custom_errors.contains(&response.status().as_u16())) {
            response = errors::page(
                &self.client(BackendProtocol::Http, None),
                fallback.as_deref(),
                &failed,
                response.status(),
            )
            .await;
        }
        (passed.finish(response), metrics)
    }

    pub(crate) async fn forward(
        &self,
        mut request: Request<RequestBody>,
        to: Forward<'_>,
        conn: &Conn,
    ) -> Response<Body> {
        let Forward {
            upstream,
            authority,
            path,
            settings,
            matched,
            tls_client,
            metrics,
            retry,
        } = to;
        // An HTTP/1.1 upgrade (WebSocket and the like): the Upgrade and Connection headers go on, and once the
        // upstream switches protocols the two connections are joined. HTTP/2 upstreams have no such thing.
        let protocol = settings.backend_protocol;
        // An HTTP/2 extended CONNECT (WebSockets over HTTP/2) goes upstream as the same HTTP/1.1 upgrade.
        let connect = connect::protocol(&request);
        let upgrade = connect
            .clone()
            .or_else(|| upgrade_protocol(request.headers()))
            .filter(|_| !protocol.http2());
        // gRPC needs `TE: trailers` (the only TE HTTP/2 allows); other TE values are hop-by-hop.
        let trailers = protocol.http2() && asks_for_trailers(request.headers());
        let mut client_side = upgrade.is_some().then(|| crate::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        forwarded_headers(&mut parts.headers, authority, conn);
        if let Some(host) = &settings.upstream_vhost {
            parts.headers.insert(header::HOST, host.clone());
        }
        if let Some(prefix) = &settings.forwarded_prefix {
            parts
                .headers
                .insert(HeaderName::from_static("x-forwarded-prefix"), prefix.clone());
        }
        if let (Some(asked), Some(_)) = (&connect, &upgrade) {
            connect::as_upgrade(&mut parts, asked);
        }
        if let Some(protocol) = upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol);
        }
        if trailers {
            parts.headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        parts.version = if protocol.http2() {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        // A body the proxy holds whole (none, or a small one read first) can be sent again.
        let mut payload = match body.payload(settings).await {
            Ok(payload) => payload,
            Err(response) => return response,
        };
        let idempotent = idempotent(&parts.method);
        let policy = retry.filter(|_| payload.replayable());
        let tries = match policy {
            Some(policy) => 1 + policy.attempts as usize,
            None if payload.replayable() => TRIES.min(upstream.endpoints().len()),
            None => 1,
        };
        let client = match tls_client {
            Some(client) => Upstreams::Client {
                client: Box::new(client),
                protocol,
            },
            None if protocol == BackendProtocol::Http => Upstreams::Pool {
                connect: settings.connect_timeout.unwrap_or(CONNECT_TIMEOUT),
            },
            None => Upstreams::Client {
                client: Box::new(self.client(protocol, settings.connect_timeout)),
                protocol,
            },
        };
        let mut last = None;
        // With affinity the session's endpoint goes first (and a new session's cookie is set by whichever answers).
        let sticky = settings
            .affinity
            .as_ref()
            .map(|affinity| affinity.attempts(upstream, &parts.headers, tries));
        // A retry policy may try more times than there are endpoints: round and round.
        let plain = sticky.is_none().then(|| upstream.attempts().cycle().take(tries));
        let attempts = sticky.into_iter().flatten().chain(
            plain
                .into_iter()
                .flatten()
                .map(|endpoint| Attempt { endpoint, set: None }),
        );
        let mut attempts = attempts.peekable();
        let mut parts = Some(parts);
        let mut retries = 0;
        while let Some(Attempt { endpoint, set }) = attempts.next() {
            let more = attempts.peek().is_some();
            if let Some(policy) = policy.filter(|_| retries > 0) {
                tokio::time::sleep(policy.backoff(retries)).await;
            }
            retries += 1;
            // The head is copied only for a request that may be sent again.
            let head = if more { parts.clone() } else { parts.take() };
            let Some(head) = head else { break };
            let mut attempt = Request::from_parts(head, payload.body());
            *attempt.uri_mut() = match client.uri(endpoint, &path) {
                Ok(uri) => uri,
                Err(_) => return local(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
            };
            // proxy-read-timeout counts from when the request body has all gone, as nginx's: at once for a body
            // the proxy holds whole.
            let sent = (!payload.replayable()).then(|| Arc::new(tokio::sync::Notify::new()));
            let attempt = match &sent {
                Some(sent) => {
                    let sent = sent.clone();
                    attempt.map(|body| OnEnd::new(body, move || sent.notify_one()).boxed_unsync())
                }
                None => attempt,
            };
            let read_timeout = async {
                if let Some(sent) = &sent {
                    sent.notified().await;
                }
                tokio::time::sleep(settings.read_timeout).await;
            };
            let sending = Instant::now();
            let answer = tokio::select! {
                answer = client.send(endpoint, attempt) => answer,
                () = read_timeout => {
                    tracing::debug!(service = %upstream.service, %endpoint, "upstream timed out");
                    // A route's retries take a try that timed out too (GEP-1731).
                    if more && policy.is_some() {
                        continue;
                    }
                    return local(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n");
                }
            };
            if answer.is_ok() {
                metrics.record_upstream(sending.elapsed());
            }
            match answer {
                Ok((response, lease)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    return match client_side.take() {
                        Some(client_side) => tunnel(response, lease, client_side, connect.is_some()),
                        None => local(StatusCode::BAD_GATEWAY, "502 Bad Gateway: an unasked protocol switch\n"),
                    };
                }
                Ok((response, lease)) if more && policy.is_some_and(|p| p.on(response.status())) => {
                    tracing::debug!(service = %upstream.service, %endpoint, status = %response.status(), "retried");
                    // Its connection goes back only if the body is already whole (else it is closed).
                    drop(pool::returning(response.into_body(), lease));
                }
                Ok((response, lease)) => {
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    let cookie = settings.affinity.as_ref().zip(set);
                    if let Some((name, value)) =
                        cookie.and_then(|(a, value)| a.session_header(&value, matched, conn.tls))
                    {
                        parts.headers.append(name, value);
                    }
                    let body = Idle::new(pool::returning(body, lease), settings.read_timeout);
                    return Response::from_parts(parts, body.boxed_unsync());
                }
                Err(failed) if caused_by::<LengthLimitError>(&*failed.error) => return too_large_response(),
                // No response head came: the next endpoint gets the request if it surely did not reach this one,
                // or its method lets it be sent twice.
                Err(failed) => {
                    tracing::debug!(service = %upstream.service, %endpoint, error = %failed.error, "upstream failed");
                    let again = failed.unsent || idempotent;
                    last = Some(failed.error);
                    if !again {
                        break;
                    }
                }
            }
        }
        tracing::warn!(service = %upstream.service, error = ?last, "no upstream answered");
        local(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n")
    }
}

/// A request's body as the proxy has it: not read yet, or read as `forward` sends it (an HTTPRoute's mirrors read
/// it before, to send the same body).
pub(crate) enum RequestBody {
    Unread(Incoming),
    Read(Payload),
}

impl RequestBody {
    /// The body as it goes upstream (see [`Payload::read`]).
    pub(crate) async fn payload(self, settings: &Annotations) -> Result<Payload, Response<Body>> {
        match self {
            RequestBody::Unread(body) => Payload::read(body, settings).await,
            RequestBody::Read(payload) => Ok(payload),
        }
    }
}

/// A request's body on its way upstream: whole in memory when it can be sent again, else as it comes.
pub(crate) enum Payload {
    Whole(Bytes),
    Streaming(Option<Body>),
}

impl Payload {
    /// The body, read whole first when it is small (a Content-Length of at most `REPLAY_LIMIT`), or as it comes
    /// (larger, chunked, and to HTTP/2 upstreams: gRPC streams and their trailers); the proxy's answer when the
    /// client sent too much (413), too slowly (408) or went away.
    async fn read(body: Incoming, settings: &Annotations) -> Result<Payload, Response<Body>> {
        if body.is_end_stream() {
            return Ok(Payload::Whole(Bytes::new()));
        }
        let small = !settings.backend_protocol.http2() && body.size_hint().exact().is_some_and(|n| n <= REPLAY_LIMIT);
        let body = request_body(body, settings);
        if !small {
            return Ok(Payload::Streaming(Some(body)));
        }
        match body.collect().await {
            Ok(whole) => Ok(Payload::Whole(whole.to_bytes())),
            Err(e) if caused_by::<LengthLimitError>(&*e) => Err(too_large_response()),
            Err(e) if caused_by::<Stalled>(&*e) => Err(local(StatusCode::REQUEST_TIMEOUT, "408 Request Timeout\n")),
            Err(_) => Err(local(StatusCode::BAD_REQUEST, "400 Bad Request\n")),
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Payload::Whole(_))
    }

    /// The whole body, when the proxy holds it.
    pub(crate) fn whole(&self) -> Option<&Bytes> {
        match self {
            Payload::Whole(bytes) => Some(bytes),
            Payload::Streaming(_) => None,
        }
    }

    /// The body for the next try (a streaming one's only once).
    fn body(&mut self) -> Body {
        match self {
            Payload::Whole(bytes) if bytes.is_empty() => empty(),
            Payload::Whole(bytes) => Full::new(bytes.clone()).map_err(|never| match never {}).boxed_unsync(),
            Payload::Streaming(body) => body.take().unwrap_or_else(empty),
        }
    }
}

/// Where a request goes upstream.
pub(crate) struct Forward<'a> {
    pub(crate) upstream: &'a Upstream,
    /// The request's host as the client wrote it.
    pub(crate) authority: &'a str,
    /// The path and query the upstream gets.
    pub(crate) path: String,
    pub(crate) settings: &'a Annotations,
    /// The path of the rule that matched, unless a regex (a session cookie's default path).
    pub(crate) matched: Option<&'a str>,
    /// The route's own client (`proxy-ssl-*`).
    pub(crate) tls_client: Option<UpstreamClient>,
    /// Where the upstream's time to its response head counts.
    pub(crate) metrics: &'a RouteMetrics,
    /// An HTTPRoute rule's retries.
    pub(crate) retry: Option<&'a Retry>,
}

/// The path and query the upstream gets: the request's, or what `rewrite-target` makes of it with the captures of
/// the path regex. As nginx's `rewrite`, the query goes after the new path (after its own query, if it has one).
fn upstream_path(rule: Option<&PathRule>, settings: &Annotations, uri: &Uri) -> String {
    let as_asked = || uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let (Some(rule), Some(target)) = (rule, settings.rewrite_target.as_deref()) else {
        return as_asked();
    };
    if target == rule.path {
        return as_asked();
    }
    let mut path = rule.rewrite(uri.path(), target);
    if let Some(query) = uri.query() {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str(query);
    }
    path
}

/// The request body as sent upstream: at most `proxy-body-size` (a chunked body that grows past it fails the
/// request with 413), and failing when the client stalls longer than `proxy-send-timeout`.
fn request_body(body: Incoming, settings: &Annotations) -> Body {
    let body = Idle::new(body, settings.send_timeout);
    match settings.body_limit {
        Some(limit) => Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).boxed_unsync(),
        None => body.boxed_unsync(),
    }
}

/// Whether the request's Content-Length says its body is larger than `limit`.
fn too_large(headers: &HeaderMap, limit: Option<u64>) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    matches!((length, limit), (Some(length), Some(limit)) if length > limit)
}

fn too_large_response() -> Response<Body> {
    let mut response = local(StatusCode::PAYLOAD_TOO_LARGE, "413 Request Entity Too Large\n");
    // The rest of the body is not read: the connection cannot carry another request.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Whether `E` is somewhere in the chain of `error`'s sources.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<E>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether the comma-separated list header `name` (Connection, TE) has `token`, in any case.
pub(crate) fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether the request's TE header names `trailers`.
fn asks_for_trailers(headers: &HeaderMap) -> bool {
    has_token(headers, header::TE, "trailers")
}

/// The protocol an HTTP/1.1 request asks to switch to (`Connection: upgrade` and `Upgrade: PROTOCOL`).
pub(crate) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asked = has_token(headers, header::CONNECTION, "upgrade");
    asked.then(|| headers.get(header::UPGRADE).cloned()).flatten()
}

/// Passes the upstream's 101 to the client (as 200 to an HTTP/2 extended CONNECT) and joins the two
/// connections once both have switched, byte for byte in both directions until either side closes.
fn tunnel(
    mut response: Response<hyper::body::Incoming>,
    lease: Option<Lease>,
    client_side: OnUpgrade,
    extended_connect: bool,
) -> Response<Body> {
    let upstream_side = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (mut client, upstream) = match (client_side.wait().await, upstream_side.await) {
            (Ok(client), Ok(upstream)) => (client, upstream),
            (Err(e), _) => return tracing::debug!(error = %e, "protocol switch failed on the client's side"),
            (_, Err(e)) => return tracing::debug!(error = %e, "protocol switch failed on the upstream's side"),
        };
        // The connection is the tunnel's now, never the pool's again.
        drop(lease);
        let mut upstream = TokioIo::new(upstream);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    });
    let (mut parts, body) = response.into_parts();
    if extended_connect {
        connect::accepted(&mut parts);
    }
    Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
}

/// Whether an HTTP/2 request over TLS names a host whose certificate is not the one its connection was made with.
/// HTTP/2 clients reuse a connection for every host its certificate covers (RFC 9113 §9.1.1), so with a
/// wildcard or shared certificate a request may come on a connection made for another name; when the host has a
/// certificate of its own the client must retry on a connection of its own (RFC 9110 §15.5.20).
fn misdirected(table: &Table, conn: &Conn, name: &str) -> bool {
    let Some(sni) = conn.sni.as_deref() else { return false };
    if !conn.tls || sni.eq_ignore_ascii_case(name) {
        return false;
    }
    let certificates = table.certificates();
    match (certificates.get(sni), certificates.get(name)) {
        (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
        (None, None) => false,
        _ => true,
    }
}

/// The request's host as the client wrote it: the HTTP/2 `:authority` (or an absolute URI's), else Host.
pub(crate) fn authority<B>(request: &Request<B>) -> String {
    match request.uri().authority() {
        Some(a) => a.as_str().to_string(),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    }
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A response of the proxy's own.
pub(crate) fn local(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What the default backend answers: 404, and 200 on `/healthz` (ingress-nginx's default backend does the same).
fn default_backend(path: &str) -> Response<Body> {
    match path {
        "/healthz" => local(StatusCode::OK, "ok\n"),
        _ => local(StatusCode::NOT_FOUND, "404 Not Found: default backend\n"),
    }
}

/// 308 to the same host and path over HTTPS (308 keeps the method and body, unlike 301).
fn redirect_to_https(name: &str, uri: &Uri) -> Response<Body> {
    let target = format!("https://{name}{}", uri.path_and_query().map_or("/", |p| p.as_str()));
    match HeaderValue::try_from(target) {
        Ok(location) => redirect(StatusCode::PERMANENT_REDIRECT, location),
        Err(_) => local(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
    }
}

/// A redirect (`code` is 3xx) to `location`.
pub(crate) fn redirect(code: StatusCode, location: HeaderValue) -> Response<Body> {
    let mut response = local(code, "redirect\n");
    response.headers_mut().insert(header::LOCATION, location);
    response
}

/// Headers that describe one connection, not the message: never forwarded (RFC 9110 §7.6.1), nor those the
/// Connection header names. `Proxy` too: a client must not set an upstream's proxy (httpoxy).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        HeaderName::from_static("proxy"),
    ] {
        headers.remove(name);
    }
}

/// The request headers an upstream gets: the client's, less the hop-by-hop ones, with Host kept as the client
/// sent it and X-Forwarded-For (appended), -Proto, -Host, -Port, X-Real-IP and X-Request-ID (kept if the client
/// sent one, else made).
fn forwarded_headers(headers: &mut HeaderMap, authority: &str, conn: &Conn) {
    strip_hop_by_hop(headers);
    // Values made without an intermediate String where they can be: this runs for every request.
    let client = HeaderValue::try_from(conn.client.ip().to_string()).ok();
    let forwarded_for = match (headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()), &client) {
        (Some(earlier), Some(_)) => HeaderValue::try_from(format!("{earlier}, {}", conn.client.ip())).ok(),
        (None, client) => client.clone(),
        (Some(_), None) => None,
    };
    let proto = HeaderValue::from_static(if conn.tls { "https" } else { "http" });
    let host = HeaderValue::try_from(authority).ok();
    let name = host::of_authority(authority);
    let forwarded_host = match &host {
        Some(host) if name == authority => Some(host.clone()),
        _ => HeaderValue::try_from(name).ok(),
    };
    let values = [
        (header::HOST, host),
        (HeaderName::from_static("x-forwarded-for"), forwarded_for),
        (HeaderName::from_static("x-forwarded-proto"), Some(proto)),
        (HeaderName::from_static("x-forwarded-host"), forwarded_host),
        (
            HeaderName::from_static("x-forwarded-port"),
            Some(HeaderValue::from(conn.local.port())),
        ),
        (HeaderName::from_static("x-real-ip"), client),
    ];
    for (name, value) in values {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
    let id = HeaderName::from_static("x-request-id");
    if !headers.contains_key(&id)
        && let Ok(value) = HeaderValue::try_from(random_hex())
    {
        headers.insert(id, value);
    }
}

/// A number in `0..total`, uniform enough for a traffic split (the modulo bias is below 2^-32 * total).
pub(crate) fn roll(total: u32) -> u32 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    u32::from_ne_bytes(bytes) % total.max(1)
}

/// 128 random bits in hex, as ingress-nginx's `$req_id`. The bits come from the system's random source 32 at a
/// time per thread: one system call per request was a measurable part of a proxied request's cost.
pub(crate) fn random_hex() -> String {
    use ring::rand::SecureRandom;
    use std::cell::RefCell;
    const BATCH: usize = 32;
    thread_local! {
        static RANDOM: RefCell<([u8; 16 * BATCH], usize)> = const { RefCell::new(([0; 16 * BATCH], BATCH)) };
    }
    let bytes: [u8; 16] = RANDOM.with_borrow_mut(|(pool, used)| {
        if *used == BATCH {
            // The system's random source does not fail on Linux; zeros would still be valid (if unhelpful) ids.
            let _ = ring::rand::SystemRandom::new().fill(pool);
            *used = 0;
        }
        let mut id = [0; 16];
        id.copy_from_slice(&pool[*used * 16..][..16]);
        *used += 1;
        id
    });
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(32);
    for b in bytes {
        text.push(char::from(HEX[usize::from(b >> 4)]));
        text.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    text
}
