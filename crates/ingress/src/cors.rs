//! `enable-cors` and `cors-*`: ingress-nginx's CORS. A request whose Origin is allowed gets the
//! Access-Control-* headers on its response (they replace the upstream's); an allowed preflight (OPTIONS) is
//! answered 204 by the proxy itself. A request from another origin passes as if CORS were off.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// ingress-nginx's defaults.
pub const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
pub const DEFAULT_HEADERS: &str =
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
pub const DEFAULT_MAX_AGE: u64 = 1_728_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    pub origins: Origins,
    pub methods: HeaderValue,
    pub headers: HeaderValue,
    pub expose: Option<HeaderValue>,
    pub credentials: bool,
    pub max_age: u64,
}

impl Default for Cors {
    fn default() -> Cors {
        Cors {
            origins: Origins::Any,
            methods: HeaderValue::from_static(DEFAULT_METHODS),
            headers: HeaderValue::from_static(DEFAULT_HEADERS),
            expose: None,
            credentials: true,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// `cors-allow-origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origins {
    /// `*` (the default): every origin, answered `Access-Control-Allow-Origin: *` as ingress-nginx does.
    Any,
    /// Origins (`scheme://host[:port]`, lower case); `scheme://*.domain` takes one label in place of `*`.
    List(Vec<String>),
}

impl Origins {
    /// A comma-separated list; entries that are no origin are returned apart (and left out).
    pub fn parse(value: &str) -> (Origins, Vec<String>) {
        let entries: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if entries.is_empty() || entries == ["*"] {
            return (Origins::Any, Vec::new());
        }
        let (good, bad): (Vec<&str>, Vec<&str>) = entries.into_iter().partition(|e| is_origin(e));
        (
            Origins::List(good.iter().map(|o| o.to_ascii_lowercase()).collect()),
            bad.into_iter().map(String::from).collect(),
        )
    }

    /// The Access-Control-Allow-Origin value for a request from `origin`, if it is allowed.
    fn allow(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match self {
            Origins::Any => Some(HeaderValue::from_static("*")),
            Origins::List(list) => {
                let asked = origin.to_str().ok()?.to_ascii_lowercase();
                list.iter().any(|o| matches(o, &asked)).then(|| origin.clone())
            }
        }
    }
}

/// `scheme://host[:port]` with http(s), the host's first label possibly `*`.
fn is_origin(entry: &str) -> bool {
    let Some((scheme, rest)) = entry.split_once("://") else {
        return false;
    };
    let host = match rest.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => rest,
    };
    let host = host.strip_prefix("*.").unwrap_or(host);
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .split('.')
            .all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// Whether origin `asked` is `allowed` (both lower case): equal, or one label (letters, digits, `-`) in place
/// of a wildcard's `*`.
fn matches(allowed: &str, asked: &str) -> bool {
    match allowed.split_once('*') {
        None => allowed == asked,
        Some((before, after)) => asked
            .strip_prefix(before)
            .and_then(|rest| rest.strip_suffix(after))
            .is_some_and(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')),
    }
}

impl Cors {
    /// The Access-Control-* headers a request with `headers` gets, none when its origin is not allowed (or it
    /// has none and the list is not `*`).
    pub fn response_headers(&self, headers: &HeaderMap) -> Option<HeaderMap> {
        let allow = match (&self.origins, headers.get(header::ORIGIN)) {
            (Origins::Any, _) => HeaderValue::from_static("*"),
            (origins, Some(origin)) => origins.allow(origin)?,
            (Origins::List(_), None) => return None,
        };
        let mut out = HeaderMap::new();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        if let Some(expose) = &self.expose {
            out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age));
        Some(out)
    }
}

/// Puts `cors` headers on a response, replacing the upstream's.
pub fn apply(cors: HeaderMap, response: &mut HeaderMap) {
    for (name, value) in &cors {
        response.insert(name.clone(), value.clone());
    }
}

/// A comma-separated list of HTTP tokens (methods or header names), as a header value.
pub fn token_list(value: &str) -> Option<HeaderValue> {
    let tokens: Vec<&str> = value.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    if tokens.is_empty() || !tokens.iter().all(|t| HeaderName::try_from(*t).is_ok()) {
        return None;
    }
    HeaderValue::try_from(tokens.join(", ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(value: &'static str) -> HeaderMap {
        HeaderMap::from_iter([(header::ORIGIN, HeaderValue::from_static(value))])
    }

    #[test]
    fn origin_lists_with_wildcard_subdomains() {
        let (origins, bad) =
            Origins::parse("https://a.example, https://*.b.example:8443, ftp://x, *.c, http://ok.example");
        assert_eq!(bad, ["ftp://x", "*.c"]);
        let cors = Cors {
            origins,
            ..Cors::default()
        };
        for (asked, allowed) in [
            ("https://a.example", true),
            ("HTTPS://A.example", true),
            ("http://a.example", false),
            ("https://x.b.example:8443", true),
            ("https://b.example:8443", false),
            ("https://x.y.b.example:8443", false),
            ("https://x.b.example", false),
            ("http://ok.example", true),
            ("https://evil.example/https://a.example", false),
        ] {
            let out = cors.response_headers(&origin(asked));
            assert_eq!(out.is_some(), allowed, "{asked}");
            if let Some(out) = out {
                assert_eq!(out[header::ACCESS_CONTROL_ALLOW_ORIGIN], asked);
            }
        }
        assert!(cors.response_headers(&HeaderMap::new()).is_none());
    }

    #[test]
    fn any_origin_and_the_defaults() {
        let out = Cors::default().response_headers(&HeaderMap::new()).unwrap();
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_METHODS], DEFAULT_METHODS);
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_HEADERS], DEFAULT_HEADERS);
        assert_eq!(out[header::ACCESS_CONTROL_MAX_AGE], "1728000");
        assert!(!out.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
        let quiet = Cors {
            credentials: false,
            ..Cors::default()
        };
        assert!(
            !quiet
                .response_headers(&HeaderMap::new())
                .unwrap()
                .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
        );
    }

    #[test]
    fn token_lists() {
        assert_eq!(token_list("GET,POST , PUT").unwrap(), "GET, POST, PUT");
        assert!(token_list("GET;rm").is_none());
        assert!(token_list(" , ").is_none());
    }
}
