//! `custom-http-errors` and `default-backend`: an answer of one of the listed codes is replaced by the error
//! backend's (the `default-backend` Service, else weft's own plain page of that code), which is told what failed
//! in the headers ingress-nginx sends: X-Code, X-Format (the client's Accept), X-Original-URI, X-Namespace,
//! X-Ingress-Name, X-Service-Name, X-Service-Port and X-Request-ID. The error backend's status goes to the
//! client as it answers (it is expected to answer the code it was given).

use crate::backend::UpstreamClient;
use crate::body::Body;
use crate::upstream::Upstream;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use std::time::Duration;

/// How long the error backend has to answer before weft's own page is sent.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The request whose answer is replaced.
#[derive(Clone, Debug)]
pub struct Failed {
    pub method: Method,
    /// Path and query as the client asked.
    pub uri: String,
    /// The client's Accept header (X-Format; ingress-nginx's default `text/html` without one).
    pub accept: HeaderValue,
    pub request_id: HeaderValue,
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    /// `namespace/name:port` of the route's Service.
    pub service: String,
}

impl Failed {
    /// What the error backend is told about a request with `headers`.
    pub fn new(method: &Method, uri: &Uri, headers: &HeaderMap, ingress: &str, service: &str) -> Failed {
        Failed {
            method: method.clone(),
            uri: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
            accept: headers
                .get(header::ACCEPT)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static("text/html")),
            request_id: headers
                .get("x-request-id")
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static("")),
            ingress: ingress.to_string(),
            service: service.to_string(),
        }
    }

    /// The headers of the request to the error backend for `code`.
    pub fn headers(&self, code: StatusCode) -> HeaderMap {
        let (namespace, ingress) = self.ingress.split_once('/').unwrap_or(("", &self.ingress));
        // Upstream names are `namespace/name:port`.
        let (service, port) = self
            .service
            .split_once('/')
            .map_or(self.service.as_str(), |(_, rest)| rest)
            .rsplit_once(':')
            .unwrap_or((&self.service, ""));
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        put("x-code", code.as_str());
        put("x-original-uri", &self.uri);
        put("x-namespace", namespace);
        put("x-ingress-name", ingress);
        put("x-service-name", service);
        put("x-service-port", port);
        headers.insert(HeaderName::from_static("x-format"), self.accept.clone());
        headers.insert(HeaderName::from_static("x-request-id"), self.request_id.clone());
        headers
    }
}

/// What the error backend will be told about `request`, which gets an X-Request-ID if it has none (so that the
/// upstream and the error backend see the same).
pub fn failed<B>(request: &mut Request<B>, ingress: &str, service: &str) -> Failed {
    let id = HeaderName::from_static("x-request-id");
    if !request.headers().contains_key(&id)
        && let Ok(value) = HeaderValue::try_from(crate::proxy::random_hex())
    {
        request.headers_mut().insert(id, value);
    }
    Failed::new(request.method(), request.uri(), request.headers(), ingress, service)
}

/// The page of an answer `code` to `failed`: the error backend's, or weft's own when there is none or it does
/// not answer.
pub async fn page(
    client: &UpstreamClient,
    backend: Option<&Upstream>,
    failed: &Failed,
    code: StatusCode,
) -> Response<Body> {
    for endpoint in backend.into_iter().flat_map(|b| b.attempts().take(2)) {
        let Ok(uri) = Uri::try_from(format!("http://{endpoint}{}", failed.uri)) else {
            break;
        };
        let mut request = Request::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
        *request.method_mut() = failed.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = failed.headers(code);
        match tokio::time::timeout(TIMEOUT, client.request(request)).await {
            Ok(Ok(response)) => return response.map(|body| body.map_err(Into::into).boxed_unsync()),
            Ok(Err(e)) => tracing::debug!(%endpoint, error = %e, "error backend failed"),
            Err(_) => tracing::debug!(%endpoint, "error backend timed out"),
        }
    }
    own_page(code)
}

/// weft's own page of `code`: plain text.
fn own_page(code: StatusCode) -> Response<Body> {
    let text = format!("{} {}\n", code.as_u16(), code.canonical_reason().unwrap_or_default());
    let mut response = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_backend_hears_what_failed() {
        let headers = HeaderMap::from_iter([
            (header::ACCEPT, HeaderValue::from_static("application/json")),
            (HeaderName::from_static("x-request-id"), HeaderValue::from_static("abc")),
        ]);
        let uri: Uri = "/app/x?q=1".parse().unwrap();
        let failed = Failed::new(&Method::GET, &uri, &headers, "shop/web", "shop/api:8080");
        let out = failed.headers(StatusCode::NOT_FOUND);
        for (name, value) in [
            ("x-code", "404"),
            ("x-format", "application/json"),
            ("x-original-uri", "/app/x?q=1"),
            ("x-namespace", "shop"),
            ("x-ingress-name", "web"),
            ("x-service-name", "api"),
            ("x-service-port", "8080"),
            ("x-request-id", "abc"),
        ] {
            assert_eq!(out[name], value, "{name}");
        }
        let bare = Failed::new(&Method::GET, &uri, &HeaderMap::new(), "shop/web", "shop/api:http");
        assert_eq!(bare.headers(StatusCode::SERVICE_UNAVAILABLE)["x-format"], "text/html");
    }
}
