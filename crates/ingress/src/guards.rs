//! What a route's annotations do around proxying, in ingress-nginx's order: a CORS preflight is answered, then
//! the `limit-*` limits apply (503), then basic authentication (401); a route whose `auth-secret` or
//! `proxy-ssl-secret` cannot serve answers 503. The response then gets its CORS headers and keeps the client
//! counted in flight until it has been sent. ACME HTTP-01 challenges are never authenticated (ingress-nginx's
//! default `no-auth-locations`): an ACME server cannot log in, and cert-manager may put its solver's path on an
//! Ingress that has basic authentication.

use crate::auth::Users;
use crate::backend::UpstreamClient;
use crate::body::Body;
use crate::cors;
use crate::proxy::{ACME_CHALLENGE, local};
use crate::ratelimit::InFlight;
use crate::table::Route;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::net::IpAddr;
use std::sync::Arc;

/// A request let through so far, and what its response gets.
pub struct Passed {
    cors: Option<HeaderMap>,
    in_flight: Option<InFlight>,
    auth: Option<Arc<Users>>,
    /// The route's own upstream client (`proxy-ssl-*`).
    pub client: Option<UpstreamClient>,
}

/// The answer of a request that stops at a check (boxed: the rare path).
pub type Stop = Box<Response<Body>>;

/// The checks that need no waiting: the answer when the request stops here.
pub fn check<B>(route: &Route, request: &Request<B>, client: IpAddr) -> Result<Passed, Stop> {
    let settings = &route.annotations;
    let cors = settings
        .cors
        .as_ref()
        .and_then(|c| c.response_headers(request.headers()));
    if let Some(cors) = cors.as_ref().filter(|_| request.method() == Method::OPTIONS) {
        return Err(Box::new(preflight(cors.clone())));
    }
    let in_flight = match route.limiter.as_ref().map(|l| l.admit(client)) {
        Some(Err(())) => return Err(Box::new(unavailable("503 Service Temporarily Unavailable\n"))),
        Some(Ok(in_flight)) => in_flight,
        None => None,
    };
    let challenge = request.uri().path().starts_with(ACME_CHALLENGE);
    let auth = match route.auth.as_ref().filter(|_| !challenge) {
        Some(Ok(users)) => Some(users.clone()),
        Some(Err(why)) => return Err(Box::new(denied(why))),
        None => None,
    };
    let client = match &route.upstream_tls {
        Some(Ok(client)) => Some(client.clone()),
        Some(Err(why)) => return Err(Box::new(denied(why))),
        None => None,
    };
    Ok(Passed {
        cors,
        in_flight,
        auth,
        client,
    })
}

impl Passed {
    /// Basic authentication: the 401 when the request's credentials do not pass.
    pub async fn authenticate(&mut self, headers: &HeaderMap) -> Result<(), Stop> {
        let Some(users) = &self.auth else { return Ok(()) };
        if users.admits(headers).await {
            return Ok(());
        }
        let mut response = local(StatusCode::UNAUTHORIZED, "401 Authorization Required\n");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, users.challenge());
        Err(Box::new(self.finish(response)))
    }

    /// The response as it goes to the client: with its CORS headers, and counted in flight until sent.
    pub fn finish(&mut self, mut response: Response<Body>) -> Response<Body> {
        if let Some(cors) = self.cors.take() {
            cors::apply(cors, response.headers_mut());
        }
        if let Some(in_flight) = self.in_flight.take() {
            response = response.map(|body| {
                body.map_frame(move |frame| {
                    let _ = &in_flight;
                    frame
                })
                .boxed_unsync()
            });
        }
        response
    }
}

fn unavailable(text: &'static str) -> Response<Body> {
    local(StatusCode::SERVICE_UNAVAILABLE, text)
}

/// A route that cannot serve as asked (never served without the authentication or TLS it asks for).
fn denied(why: &str) -> Response<Body> {
    tracing::debug!(%why, "503");
    unavailable("503 Service Unavailable\n")
}

/// A CORS preflight's answer: 204 with the Access-Control-* headers, as ingress-nginx's.
fn preflight(cors: HeaderMap) -> Response<Body> {
    let mut response = local(StatusCode::NO_CONTENT, "");
    cors::apply(cors, response.headers_mut());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain charset=UTF-8"),
    );
    response
}
