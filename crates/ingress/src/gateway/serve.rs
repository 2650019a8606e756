//! Requests on a Gateway's pod ports: the listener by Host, the first match in the spec's order, the rule's
//! redirect or its filters, then a backend by its session (sessionPersistence) or by weight (500 for the share
//! of a backendRef that cannot be followed, 503 when a Service has no ready endpoints), forwarded as the Ingress
//! routes are.

use super::compile::{BackendTarget, Port};
use super::cors::Cors;
use super::mirror::Mirror;
use crate::annotations::Annotations;
use crate::body::Incoming;
use crate::host;
use crate::metrics::RouteMetrics;
use crate::proxy::{self, Body, Conn, Forward, Proxy, RequestBody};
use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use std::sync::Arc;

impl Proxy {
    /// The response to a request that came on Gateway listener port `port`.
    pub(crate) async fn respond_gateway(
        &self,
        port: Arc<Port>,
        mut request: Request<Incoming>,
        conn: &Conn,
    ) -> (Response<Body>, Arc<RouteMetrics>) {
        let unrouted = self.unrouted();
        let authority = proxy::authority(&request);
        let name = host::of_authority(&authority);
        // HTTPS: the listener its connection's server name picked must be the request's (GEP-3567).
        if let Some(sni) = conn.sni.as_deref().filter(|_| conn.tls)
            && port.misdirected(sni, &name)
        {
            let response = proxy::local(StatusCode::MISDIRECTED_REQUEST, "421 Misdirected Request\n");
            return (response, unrouted);
        }
        let Some(listener) = port.requests_listener(&name) else {
            return (proxy::local(StatusCode::NOT_FOUND, "404 Not Found\n"), unrouted);
        };
        let uri = request.uri().clone();
        let (path, query) = (uri.path(), uri.query());
        let found = listener
            .candidates(&name)
            .find(|e| e.matcher.matches(request.method(), path, query, request.headers()));
        let Some(entry) = found else {
            return (proxy::local(StatusCode::NOT_FOUND, "404 Not Found\n"), unrouted);
        };
        let rule = entry.rule.clone();
        let metrics = rule.metrics.clone();
        if let Some(cors) = &rule.cors
            && Cors::is_preflight(request.method(), request.headers())
        {
            let mut response = proxy::local(StatusCode::OK, "");
            response.headers_mut().extend(cors.preflight(request.headers()));
            return (response, metrics);
        }
        // What the CORS filter needs of the request once the response comes.
        let origin = rule
            .cors
            .as_ref()
            .and_then(|_| request.headers().get(http::header::ORIGIN).cloned());
        if let Some(redirect) = &rule.redirect {
            let scheme = if conn.tls { "https" } else { "http" };
            let location = redirect.location(scheme, &name, port.port, path, query);
            let response = match HeaderValue::try_from(location) {
                Ok(location) => proxy::redirect(redirect.status, location),
                Err(_) => proxy::local(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
            };
            return (response, metrics);
        }
        if let Some(edit) = &rule.request_headers {
            edit.apply(request.headers_mut());
        }
        let mut upstream_path = match rule.rewrite.as_ref().and_then(|r| r.path.as_ref()) {
            Some(change) => change.apply(path),
            None => path.to_string(),
        };
        if let Some(q) = query {
            upstream_path.push('?');
            upstream_path.push_str(q);
        }
        let picked = rule.session_backend(request.headers());
        let picked = picked.or_else(|| rule.pick(proxy::roll(rule.total_weight())));
        let mirrors: Vec<&Mirror> = rule.mirrors.iter().filter(|m| m.chosen()).collect();
        let mut request = request.map(RequestBody::Unread);
        if !mirrors.is_empty() {
            // The copies get the body the backend gets, read first (by the chosen backend's settings).
            let defaults;
            let settings = match picked {
                Some(backend) => backend.settings.as_ref(),
                None => {
                    defaults = Annotations::default();
                    &defaults
                }
            };
            let (parts, body) = request.into_parts();
            let payload = match body.payload(settings).await {
                Ok(payload) => payload,
                Err(response) => return (response, metrics),
            };
            // A body that streams through as it comes is not kept: its request is not mirrored.
            if let Some(body) = payload.whole() {
                let mut headers = parts.headers.clone();
                // An HTTP/2 request's host is its authority; a URLRewrite's hostname replaces it.
                let host = rule.rewrite.as_ref().and_then(|r| r.hostname.clone());
                if let Some(host) = host.or_else(|| HeaderValue::try_from(authority.as_str()).ok()) {
                    headers.insert(http::header::HOST, host);
                }
                for m in mirrors {
                    m.send(&parts.method, &headers, &upstream_path, body);
                }
            }
            request = Request::from_parts(parts, RequestBody::Read(payload));
        }
        let Some(backend) = picked else {
            // No backendRefs, or every weight 0.
            return (
                proxy::local(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error\n"),
                metrics,
            );
        };
        let (upstream, tls_client) = match &backend.target {
            BackendTarget::Service { upstream, tls, .. } => (upstream.clone(), tls.as_deref().cloned()),
            BackendTarget::Invalid(why) => {
                tracing::debug!(route = %rule.route, %why, "500");
                return (
                    proxy::local(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error\n"),
                    metrics,
                );
            }
        };
        if upstream.endpoints().is_empty() {
            let response = proxy::local(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable: no ready endpoints\n",
            );
            return (response, metrics);
        }
        if let Some(edit) = &backend.request_headers {
            edit.apply(request.headers_mut());
        }
        let forward = Forward {
            upstream: &upstream,
            authority: &authority,
            path: upstream_path,
            settings: &backend.settings,
            matched: None,
            tls_client,
            metrics: &metrics,
            retry: rule.retry.as_ref(),
        };
        let forwarded = self.forward(request, forward, conn);
        let mut response = match rule.timeout {
            Some(limit) => match tokio::time::timeout(limit, forwarded).await {
                Ok(response) => response,
                Err(_) => proxy::local(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n"),
            },
            None => forwarded.await,
        };
        if let Some(cors) = &rule.cors {
            cors.decorate(origin.as_ref(), response.headers_mut());
        }
        if let Some(edit) = &rule.response_headers {
            edit.apply(response.headers_mut());
        }
        (response, metrics)
    }
}
