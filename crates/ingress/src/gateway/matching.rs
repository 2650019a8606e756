//! An HTTPRoute match (path, headers, query parameters, method) compiled, whether a request meets it, and the
//! order the spec gives matches of one host: Exact path first, then the longest prefix (regex paths after
//! both), then a method match, then the most header matches, then the most query matches; ties go to the oldest
//! route (creationTimestamp, then namespace/name), then to the first rule and match in it.

use crate::path::{Kind, PathRule};
use http::{HeaderMap, Method};
use std::cmp::Ordering;
use weft_gateway::api::{HTTPHeaderMatch, HTTPQueryParamMatch, HTTPRouteMatch};

/// Why a match cannot be compiled (the rule is not served).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MatchError {
    #[error("path type {0:?} is not Exact, PathPrefix or RegularExpression")]
    PathType(String),
    #[error("{0:?} is not a valid regular expression")]
    Regex(String),
    #[error("{0:?} is not a valid HTTP method")]
    Method(String),
    #[error("header name {0:?} is not valid")]
    HeaderName(String),
    #[error("match type {0:?} is not Exact or RegularExpression")]
    ValueType(String),
}

#[derive(Clone, Debug)]
pub enum PathMatch {
    /// Exact and PathPrefix, as Ingress's Exact and Prefix (elements, a trailing slash ignored).
    Plain(PathRule),
    /// RegularExpression: the whole path.
    Regex(regex::Regex),
}

#[derive(Clone, Debug)]
pub enum Value {
    Exact(String),
    Regex(regex::Regex),
}

impl Value {
    fn new(type_: Option<&str>, value: &str) -> Result<Value, MatchError> {
        match type_.unwrap_or("Exact") {
            "Exact" => Ok(Value::Exact(value.to_string())),
            "RegularExpression" => anchored(value).map(Value::Regex),
            other => Err(MatchError::ValueType(other.to_string())),
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Value::Exact(v) => v == value,
            Value::Regex(r) => r.is_match(value),
        }
    }
}

fn anchored(pattern: &str) -> Result<regex::Regex, MatchError> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|_| MatchError::Regex(pattern.to_string()))
}

#[derive(Clone, Debug)]
pub struct Match {
    pub path: PathMatch,
    headers: Vec<(http::HeaderName, Value)>,
    query: Vec<(String, Value)>,
    method: Option<Method>,
}

impl Match {
    pub fn compile(m: &HTTPRouteMatch) -> Result<Match, MatchError> {
        let (type_, value) = match &m.path {
            Some(p) => (
                p.type_.as_deref().unwrap_or("PathPrefix"),
                p.value.as_deref().unwrap_or("/"),
            ),
            None => ("PathPrefix", "/"),
        };
        let path = match type_ {
            "Exact" => PathMatch::Plain(PathRule::new(Kind::Exact, value)),
            "PathPrefix" => PathMatch::Plain(PathRule::new(Kind::Prefix, value)),
            "RegularExpression" => PathMatch::Regex(anchored(value)?),
            other => return Err(MatchError::PathType(other.to_string())),
        };
        let mut headers = Vec::new();
        for HTTPHeaderMatch { type_, name, value } in &m.headers {
            let name = http::HeaderName::try_from(name.as_str()).map_err(|_| MatchError::HeaderName(name.clone()))?;
            // Names repeated in one match: the first counts, as the spec says.
            if headers.iter().all(|(n, _)| *n != name) {
                headers.push((name, Value::new(type_.as_deref(), value)?));
            }
        }
        let mut query = Vec::new();
        for HTTPQueryParamMatch { type_, name, value } in &m.query_params {
            if query.iter().all(|(n, _)| n != name) {
                query.push((name.clone(), Value::new(type_.as_deref(), value)?));
            }
        }
        let method = match &m.method {
            Some(text) => Some(Method::from_bytes(text.as_bytes()).map_err(|_| MatchError::Method(text.clone()))?),
            None => None,
        };
        Ok(Match {
            path,
            headers,
            query,
            method,
        })
    }

    /// Whether a request meets every part of the match. Headers of one name sent several times are compared
    /// joined with ",", as the conformance suite sends them.
    pub fn matches(&self, method: &Method, path: &str, query: Option<&str>, headers: &HeaderMap) -> bool {
        let path_ok = match &self.path {
            PathMatch::Plain(rule) => rule.matches(path),
            PathMatch::Regex(r) => r.is_match(path),
        };
        if !path_ok || self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        let headers_ok = self.headers.iter().all(|(name, value)| {
            let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).peekable();
            values.peek().is_some() && value.matches(&values.collect::<Vec<_>>().join(","))
        });
        headers_ok
            && self.query.iter().all(|(name, value)| {
                // The first value of a parameter given several times.
                let found = query
                    .unwrap_or_default()
                    .split('&')
                    .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
                    .find(|(n, _)| n == name);
                found.is_some_and(|(_, v)| value.matches(v))
            })
    }

    /// The spec's order of two matches of the same host: the one that comes first is `Less`.
    pub fn precedence(&self, other: &Match) -> Ordering {
        let rank = |m: &Match| match &m.path {
            PathMatch::Plain(rule) if rule.kind == Kind::Exact => (0, usize::MAX - rule.path.len()),
            PathMatch::Plain(rule) => (1, usize::MAX - rule.path.trim_end_matches('/').len()),
            PathMatch::Regex(r) => (2, usize::MAX - r.as_str().len()),
        };
        rank(self)
            .cmp(&rank(other))
            .then_with(|| other.method.is_some().cmp(&self.method.is_some()))
            .then_with(|| other.headers.len().cmp(&self.headers.len()))
            .then_with(|| other.query.len().cmp(&self.query.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_gateway::api::HTTPPathMatch;

    fn path(type_: &str, value: &str) -> Match {
        Match::compile(&HTTPRouteMatch {
            path: Some(HTTPPathMatch {
                type_: Some(type_.into()),
                value: Some(value.into()),
            }),
            ..Default::default()
        })
        .unwrap()
    }

    fn get(m: &Match, p: &str) -> bool {
        m.matches(&Method::GET, p, None, &HeaderMap::new())
    }

    #[test]
    fn prefixes_match_whole_elements() {
        let v2 = path("PathPrefix", "/v2");
        assert!(get(&v2, "/v2") && get(&v2, "/v2/") && get(&v2, "/v2/example"));
        assert!(!get(&v2, "/v2example"));
        let exact = path("Exact", "/one");
        assert!(get(&exact, "/one") && !get(&exact, "/one/example") && !get(&exact, "/One"));
        let regex = path("RegularExpression", "/regex/[0-9]+");
        assert!(get(&regex, "/regex/12") && !get(&regex, "/regex/12/x"));
    }

    #[test]
    fn headers_and_query_parameters_match_by_value() {
        let m = Match::compile(&HTTPRouteMatch {
            headers: vec![HTTPHeaderMatch {
                type_: None,
                name: "Version".into(),
                value: "two".into(),
            }],
            query_params: vec![HTTPQueryParamMatch {
                type_: None,
                name: "animal".into(),
                value: "whale".into(),
            }],
            ..Default::default()
        })
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("version", "two".parse().unwrap());
        assert!(m.matches(&Method::GET, "/", Some("animal=whale"), &headers));
        assert!(!m.matches(&Method::GET, "/", Some("ANIMAL=whale"), &headers));
        assert!(!m.matches(&Method::GET, "/", Some("animal=whaledolphin"), &headers));
        assert!(!m.matches(&Method::GET, "/", Some("animal=whale"), &HeaderMap::new()));
    }

    #[test]
    fn exact_beats_prefix_and_longer_prefixes_beat_shorter() {
        let mut all = [
            path("PathPrefix", "/match/"),
            path("Exact", "/match"),
            path("PathPrefix", "/match/prefix/one"),
            path("RegularExpression", "/.*"),
        ];
        all.sort_by(Match::precedence);
        let order: Vec<String> = all
            .iter()
            .map(|m| match &m.path {
                PathMatch::Plain(r) => r.path.clone(),
                PathMatch::Regex(r) => r.as_str().to_string(),
            })
            .collect();
        assert_eq!(order, ["/match", "/match/prefix/one", "/match/", "^(?:/.*)$"]);
    }
}
