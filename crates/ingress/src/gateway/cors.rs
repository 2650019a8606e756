//! The CORS filter (GEP-1767): a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is
//! answered by the proxy, with the CORS headers when its origin is allowed and without them when not; other
//! requests from an allowed origin go on and their responses get `Access-Control-Allow-Origin` (and
//! `-Credentials`, `-Expose-Headers`). Allowed origins are `scheme://host[:port]` (the scheme's port by
//! default), a host `*.example.com` covering any number of labels to the left, or `*` for every origin.
//! Not the Ingress annotations' CORS (`crate::cors`): ingress-nginx's wildcard takes one label, its preflights
//! answer 204 with every header whatever was asked, and `*` stays `*` with credentials.

use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use weft_gateway::api::HTTPCORSFilter;

/// `Access-Control-Max-Age` when the filter sets none (the GEP's default).
const DEFAULT_MAX_AGE: i32 = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    /// Lowercase; `*.rest` for a wildcard, `*` for any host.
    host: String,
    port: u16,
}

impl Origin {
    fn parse(text: &str) -> Option<Origin> {
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
            _ => (rest, default),
        };
        (!host.is_empty() && !host.contains('/')).then(|| Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether a request's origin is one this allowed origin covers.
    fn covers(&self, asked: &Origin) -> bool {
        let host = match self.host.strip_prefix('*') {
            Some("") => true,
            Some(suffix) => asked.host.len() > suffix.len() && asked.host.ends_with(suffix),
            None => self.host == asked.host,
        };
        host && self.scheme == asked.scheme && self.port == asked.port
    }
}

#[derive(Clone, Debug)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<Origin>,
    credentials: bool,
    methods: Vec<String>,
    headers: Vec<String>,
    expose: Vec<String>,
    max_age: i32,
}

impl Cors {
    pub fn compile(f: &HTTPCORSFilter) -> Cors {
        Cors {
            any_origin: f.allow_origins.iter().any(|o| o == "*"),
            origins: f.allow_origins.iter().filter_map(|o| Origin::parse(o)).collect(),
            credentials: f.allow_credentials == Some(true),
            methods: f.allow_methods.clone(),
            headers: f.allow_headers.clone(),
            expose: f.expose_headers.clone(),
            max_age: f.max_age.unwrap_or(DEFAULT_MAX_AGE),
        }
    }

    /// The request's `Origin`, when this filter allows it.
    fn allowed<'a>(&self, origin: Option<&'a HeaderValue>) -> Option<&'a HeaderValue> {
        let origin = origin?;
        let asked = Origin::parse(origin.to_str().ok()?)?;
        (self.any_origin || self.origins.iter().any(|o| o.covers(&asked))).then_some(origin)
    }

    /// Whether a request is a preflight, which the proxy answers itself.
    pub fn is_preflight(method: &Method, request: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && request.contains_key(header::ORIGIN)
            && request.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// Adds what every answer to an allowed `origin` carries (the origin, `Vary`, credentials); false when the
    /// origin is not allowed.
    fn allow(&self, origin: Option<&HeaderValue>, out: &mut HeaderMap) -> bool {
        let Some(origin) = self.allowed(origin) else {
            return false;
        };
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.append(header::VARY, HeaderValue::from_static("Origin"));
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        true
    }

    /// The headers of the answer to a preflight: none when its origin is not allowed.
    pub fn preflight(&self, request: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        if !self.allow(request.get(header::ORIGIN), &mut out) {
            return out;
        }
        // With credentials a `*` is not a wildcard to a browser: the asked method or headers stand in for it.
        let list = |values: &[String], asked: HeaderName| -> Option<HeaderValue> {
            if values.is_empty() {
                return None;
            }
            if self.credentials && values.iter().any(|v| v == "*") {
                return request.get(asked).cloned();
            }
            HeaderValue::try_from(values.join(", ")).ok()
        };
        if let Some(methods) = list(&self.methods, header::ACCESS_CONTROL_REQUEST_METHOD) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        if let Some(headers) = list(&self.headers, header::ACCESS_CONTROL_REQUEST_HEADERS) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, headers);
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age));
        out
    }

    /// Adds the CORS headers to the response to a request from `origin` (its `Origin`), if it is allowed.
    pub fn decorate(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        if !self.allow(origin, response) {
            return;
        }
        let expose = self.expose.iter().filter(|h| !(self.credentials && *h == "*"));
        if let Ok(expose) = HeaderValue::try_from(expose.cloned().collect::<Vec<_>>().join(", "))
            && !expose.is_empty()
        {
            response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool, methods: &[&str]) -> Cors {
        Cors::compile(&HTTPCORSFilter {
            allow_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_credentials: Some(credentials),
            allow_methods: methods.iter().map(|o| o.to_string()).collect(),
            allow_headers: vec!["x-header-1".into(), "x-header-2".into()],
            expose_headers: vec!["x-header-3".into()],
            max_age: None,
        })
    }

    fn request(origin: &str, method: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, origin.parse().unwrap());
        if let Some(m) = method {
            h.insert(header::ACCESS_CONTROL_REQUEST_METHOD, m.parse().unwrap());
        }
        h
    }

    #[test]
    fn origins_match_by_scheme_host_and_port_with_left_wildcards() {
        let c = cors(
            &["https://www.foo.com", "https://*.bar.com", "http://foo.net:8080"],
            false,
            &[],
        );
        let allowed = |o: &str| c.allowed(request(o, None).get(header::ORIGIN)).is_some();
        assert!(allowed("https://www.foo.com"));
        assert!(allowed("https://www.foo.com:443"));
        assert!(!allowed("http://www.foo.com"));
        assert!(!allowed("https://foo.com"));
        assert!(allowed("https://a.b.bar.com"));
        assert!(!allowed("https://bar.com"));
        assert!(allowed("http://foo.net:8080"));
        assert!(!allowed("http://foo.net"));
        assert!(!allowed("null"));
        let any = request("https://any.example", None);
        assert!(cors(&["*"], false, &[]).allowed(any.get(header::ORIGIN)).is_some());
    }

    #[test]
    fn preflights_get_the_headers_only_for_allowed_origins() {
        let c = cors(&["https://www.foo.com"], true, &["GET", "OPTIONS"]);
        let out = c.preflight(&request("https://www.foo.com", Some("GET")));
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://www.foo.com");
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, OPTIONS");
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_HEADERS], "x-header-1, x-header-2");
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(out[header::ACCESS_CONTROL_MAX_AGE], "5");
        assert!(c.preflight(&request("https://www.bar.com", Some("GET"))).is_empty());
        // With credentials, `*` methods answer with the asked one.
        let wildcard = cors(&["*"], true, &["*"]);
        let out = wildcard.preflight(&request("https://x.example", Some("PUT")));
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_METHODS], "PUT");
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://x.example");
    }

    #[test]
    fn responses_to_allowed_origins_are_decorated() {
        let c = cors(&["https://www.foo.com"], false, &[]);
        let mut response = HeaderMap::new();
        c.decorate(Some(&HeaderValue::from_static("https://www.foo.com")), &mut response);
        assert_eq!(response[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://www.foo.com");
        assert_eq!(response[header::ACCESS_CONTROL_EXPOSE_HEADERS], "x-header-3");
        assert!(!response.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
        let mut response = HeaderMap::new();
        c.decorate(Some(&HeaderValue::from_static("https://evil.example")), &mut response);
        assert!(response.is_empty());
    }
}
