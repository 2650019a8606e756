//! HTTPRoute filters as the data plane applies them: header modifiers (set overwrites, add appends to what the
//! request carries joined with ",", remove; names case-insensitive), redirects (scheme, host, port, path, status)
//! and URL rewrites (host, ReplaceFullPath, ReplacePrefixMatch).

use crate::path::Kind;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use weft_gateway::api::{HTTPHeaderFilter, HTTPPathModifier, HTTPRequestRedirectFilter, HTTPURLRewriteFilter};

/// Why a filter cannot be applied (its rule is not served).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("header {0:?} is not a valid header name or value")]
    Header(String),
    #[error("path modifier {0:?} needs its value")]
    PathModifier(String),
    #[error("ReplacePrefixMatch needs a PathPrefix match")]
    PrefixWithoutPrefixMatch,
    #[error("filter type {0:?} is not supported")]
    Unsupported(String),
    #[error("{0}")]
    Incompatible(&'static str),
}

impl FilterError {
    /// The reason of a route's `Accepted` condition when every rule has this error.
    pub fn reason(&self) -> &'static str {
        match self {
            FilterError::Incompatible(_) => "IncompatibleFilters",
            _ => "UnsupportedValue",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct HeaderEdit {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

fn pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), FilterError> {
    let n = HeaderName::try_from(name).map_err(|_| FilterError::Header(name.to_string()))?;
    let v = HeaderValue::try_from(value).map_err(|_| FilterError::Header(name.to_string()))?;
    Ok((n, v))
}

impl HeaderEdit {
    pub fn compile(filter: &HTTPHeaderFilter) -> Result<HeaderEdit, FilterError> {
        Ok(HeaderEdit {
            set: filter
                .set
                .iter()
                .map(|h| pair(&h.name, &h.value))
                .collect::<Result<_, _>>()?,
            add: filter
                .add
                .iter()
                .map(|h| pair(&h.name, &h.value))
                .collect::<Result<_, _>>()?,
            remove: filter
                .remove
                .iter()
                .map(|n| HeaderName::try_from(n.as_str()).map_err(|_| FilterError::Header(n.clone())))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            // One header whose value is what was there and the new one, as the suite's echo expects.
            let joined = headers
                .get_all(name)
                .iter()
                .chain(std::iter::once(value))
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(",");
            if let Ok(joined) = HeaderValue::try_from(joined) {
                headers.insert(name.clone(), joined);
            }
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

/// A path change of a redirect or rewrite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathChange {
    Full(String),
    /// Replace the matched prefix (the rule's PathPrefix value) with this.
    Prefix {
        matched: String,
        with: String,
    },
}

impl PathChange {
    /// `prefix`: the PathPrefix of the match the rule has, if it has one.
    fn compile(m: &HTTPPathModifier, prefix: Option<&str>) -> Result<PathChange, FilterError> {
        match m.type_.as_str() {
            "ReplaceFullPath" => m
                .replace_full_path
                .clone()
                .map(PathChange::Full)
                .ok_or_else(|| FilterError::PathModifier(m.type_.clone())),
            "ReplacePrefixMatch" => {
                let with = m
                    .replace_prefix_match
                    .clone()
                    .ok_or_else(|| FilterError::PathModifier(m.type_.clone()))?;
                let matched = prefix.ok_or(FilterError::PrefixWithoutPrefixMatch)?;
                Ok(PathChange::Prefix {
                    matched: matched.trim_end_matches('/').to_string(),
                    with,
                })
            }
            other => Err(FilterError::PathModifier(other.to_string())),
        }
    }

    /// The new path of `path` (no query).
    pub fn apply(&self, path: &str) -> String {
        match self {
            PathChange::Full(full) => full.clone(),
            PathChange::Prefix { matched, with } => {
                let rest = path.strip_prefix(matched.as_str()).unwrap_or(path);
                let with = with.trim_end_matches('/');
                match (with.is_empty(), rest.is_empty()) {
                    (true, true) => "/".to_string(),
                    (true, false) => rest.to_string(),
                    (false, _) => format!("{with}{rest}"),
                }
            }
        }
    }
}

/// The PathPrefix value of a rule's match (what ReplacePrefixMatch replaces).
pub fn prefix_of(rule: &crate::path::PathRule) -> Option<&str> {
    (rule.kind == Kind::Prefix).then_some(rule.path.as_str())
}

#[derive(Clone, Debug)]
pub struct Redirect {
    scheme: Option<String>,
    hostname: Option<String>,
    port: Option<u16>,
    path: Option<PathChange>,
    pub status: http::StatusCode,
}

impl Redirect {
    pub fn compile(f: &HTTPRequestRedirectFilter, prefix: Option<&str>) -> Result<Redirect, FilterError> {
        let path = f.path.as_ref().map(|p| PathChange::compile(p, prefix)).transpose()?;
        let status = f
            .status_code
            .and_then(|c| http::StatusCode::from_u16(c as u16).ok())
            .unwrap_or(http::StatusCode::FOUND);
        Ok(Redirect {
            scheme: f.scheme.clone(),
            hostname: f.hostname.clone(),
            port: f.port.and_then(|p| u16::try_from(p).ok()),
            path,
            status,
        })
    }

    /// The Location for a request of `scheme` to `host` (no port) on `port` (the listener's) for `path`
    /// (no query; `query` goes after). The port is left out when it is the scheme's own; a changed scheme
    /// without a port takes its own.
    pub fn location(&self, scheme: &str, host: &str, port: u16, path: &str, query: Option<&str>) -> String {
        let to_scheme = self.scheme.as_deref().unwrap_or(scheme);
        let default_port = |s: &str| if s == "https" { 443 } else { 80 };
        let to_port = match (self.port, &self.scheme) {
            (Some(p), _) => p,
            (None, Some(_)) => default_port(to_scheme),
            (None, None) => port,
        };
        let host = self.hostname.as_deref().unwrap_or(host);
        let path = self.path.as_ref().map_or_else(|| path.to_string(), |c| c.apply(path));
        let mut out = if to_port == default_port(to_scheme) {
            format!("{to_scheme}://{host}{path}")
        } else {
            format!("{to_scheme}://{host}:{to_port}{path}")
        };
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

#[derive(Clone, Debug)]
pub struct Rewrite {
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathChange>,
}

impl Rewrite {
    pub fn compile(f: &HTTPURLRewriteFilter, prefix: Option<&str>) -> Result<Rewrite, FilterError> {
        let hostname = f
            .hostname
            .as_deref()
            .map(|h| HeaderValue::try_from(h).map_err(|_| FilterError::Header("host".into())))
            .transpose()?;
        let path = f.path.as_ref().map(|p| PathChange::compile(p, prefix)).transpose()?;
        Ok(Rewrite { hostname, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_gateway::api::HTTPHeader;

    fn header(name: &str, value: &str) -> HTTPHeader {
        HTTPHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn set_overwrites_add_appends_remove_removes_whatever_the_case() {
        let edit = HeaderEdit::compile(&HTTPHeaderFilter {
            set: vec![header("X-Header-Set", "header-set")],
            add: vec![header("X-Header-Add", "header-add")],
            remove: vec!["X-Header-Remove".into()],
        })
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-header-set", "original".parse().unwrap());
        headers.insert("x-header-add", "original-val-add".parse().unwrap());
        headers.insert("x-header-remove", "gone".parse().unwrap());
        edit.apply(&mut headers);
        assert_eq!(headers["x-header-set"], "header-set");
        assert_eq!(headers["x-header-add"], "original-val-add,header-add");
        assert!(!headers.contains_key("x-header-remove"));
    }

    #[test]
    fn prefix_replacement_keeps_the_rest_of_the_path() {
        let change = |matched: &str, with: &str| PathChange::Prefix {
            matched: matched.into(),
            with: with.into(),
        };
        assert_eq!(change("/prefix/one", "/one").apply("/prefix/one/two"), "/one/two");
        assert_eq!(change("/strip-prefix", "/").apply("/strip-prefix/three"), "/three");
        assert_eq!(change("/strip-prefix", "/").apply("/strip-prefix"), "/");
        assert_eq!(PathChange::Full("/one".into()).apply("/full/one/two"), "/one");
    }

    #[test]
    fn redirects_leave_out_the_schemes_own_port() {
        let r = |f: HTTPRequestRedirectFilter| Redirect::compile(&f, Some("/original-prefix")).unwrap();
        let host = r(HTTPRequestRedirectFilter {
            hostname: Some("example.org".into()),
            ..Default::default()
        });
        assert_eq!(
            host.location("http", "gw", 80, "/hostname-redirect", None),
            "http://example.org/hostname-redirect"
        );
        let scheme = r(HTTPRequestRedirectFilter {
            scheme: Some("https".into()),
            ..Default::default()
        });
        assert_eq!(scheme.location("http", "gw", 80, "/x", Some("a=b")), "https://gw/x?a=b");
        let port = r(HTTPRequestRedirectFilter {
            port: Some(8083),
            ..Default::default()
        });
        assert_eq!(port.location("http", "gw", 80, "/x", None), "http://gw:8083/x");
        let path = r(HTTPRequestRedirectFilter {
            path: Some(HTTPPathModifier {
                type_: "ReplacePrefixMatch".into(),
                replace_full_path: None,
                replace_prefix_match: Some("/replacement-prefix".into()),
            }),
            ..Default::default()
        });
        assert_eq!(
            path.location("http", "gw", 80, "/original-prefix/lemon", None),
            "http://gw/replacement-prefix/lemon"
        );
    }
}
