//! An Ingress path rule and whether a request path matches it, as networking.k8s.io/v1 defines: Exact compares
//! the whole path; Prefix compares `/`-separated elements (a trailing slash on either side ignored, a partial last
//! element never matching); ImplementationSpecific is Prefix here.

use std::cmp::Ordering;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Exact,
    Prefix,
}

impl Kind {
    /// The kind of a `pathType`; none for a value the API would have refused.
    pub fn parse(path_type: &str) -> Option<Kind> {
        match path_type {
            "Exact" => Some(Kind::Exact),
            "Prefix" | "ImplementationSpecific" => Some(Kind::Prefix),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathRule {
    pub kind: Kind,
    /// As written in the Ingress (starts with `/`).
    pub path: String,
}

impl PathRule {
    pub fn new(kind: Kind, path: &str) -> PathRule {
        PathRule {
            kind,
            path: path.to_string(),
        }
    }

    /// Whether the request path (no query) matches.
    pub fn matches(&self, request: &str) -> bool {
        match self.kind {
            Kind::Exact => request == self.path,
            Kind::Prefix => {
                // `/foo/` and `/foo` are the same prefix; `/` is the empty one, which matches everything.
                let prefix = self.path.trim_end_matches('/');
                match request.strip_prefix(prefix) {
                    Some(rest) => rest.is_empty() || rest.starts_with('/'),
                    None => false,
                }
            }
        }
    }

    /// The order rules are tried in: the longest path first, Exact before Prefix when equally long.
    pub fn precedence(&self, other: &PathRule) -> Ordering {
        other
            .path
            .len()
            .cmp(&self.path.len())
            .then_with(|| match (self.kind, other.kind) {
                (Kind::Exact, Kind::Prefix) => Ordering::Less,
                (Kind::Prefix, Kind::Exact) => Ordering::Greater,
                _ => Ordering::Equal,
            })
            .then_with(|| self.path.cmp(&other.path))
    }
}

/// The first of `rules` (in precedence order) that matches `request`.
pub fn first_match<'a, T>(rules: &'a [(PathRule, T)], request: &str) -> Option<&'a T> {
    rules.iter().find(|(rule, _)| rule.matches(request)).map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(rules: &[(Kind, &str)]) -> Vec<(PathRule, String)> {
        let mut rules: Vec<(PathRule, String)> = rules
            .iter()
            .map(|(kind, path)| (PathRule::new(*kind, path), format!("{kind:?} {path}")))
            .collect();
        rules.sort_by(|a, b| a.0.precedence(&b.0));
        rules
    }

    /// Rules, request, the rule expected to serve it.
    type Row<'a> = (&'a [(Kind, &'a str)], &'a str, Option<&'a str>);

    /// The Kubernetes documentation's path-matching examples (concepts/services-networking/ingress, "Examples"),
    /// one row each: the rules, the request, the rule that serves it (none: the default backend).
    #[test]
    fn kubernetes_docs_path_matching_examples() {
        use Kind::{Exact, Prefix};
        let table: &[Row] = &[
            (&[(Prefix, "/")], "/", Some("Prefix /")),
            (&[(Prefix, "/")], "/anything/at/all", Some("Prefix /")),
            (&[(Exact, "/foo")], "/foo", Some("Exact /foo")),
            (&[(Exact, "/foo")], "/bar", None),
            (&[(Exact, "/foo")], "/foo/", None),
            (&[(Exact, "/foo/")], "/foo", None),
            (&[(Prefix, "/foo")], "/foo", Some("Prefix /foo")),
            (&[(Prefix, "/foo")], "/foo/", Some("Prefix /foo")),
            (&[(Prefix, "/foo/")], "/foo", Some("Prefix /foo/")),
            (&[(Prefix, "/foo/")], "/foo/", Some("Prefix /foo/")),
            (&[(Prefix, "/aaa/bb")], "/aaa/bbb", None),
            (&[(Prefix, "/aaa/bbb")], "/aaa/bbb", Some("Prefix /aaa/bbb")),
            (&[(Prefix, "/aaa/bbb/")], "/aaa/bbb", Some("Prefix /aaa/bbb/")),
            (&[(Prefix, "/aaa/bbb")], "/aaa/bbb/", Some("Prefix /aaa/bbb")),
            (&[(Prefix, "/aaa/bbb")], "/aaa/bbb/ccc", Some("Prefix /aaa/bbb")),
            (&[(Prefix, "/aaa/bbb")], "/aaa/bbbxyz", None),
            (&[(Prefix, "/"), (Prefix, "/aaa")], "/aaa/ccc", Some("Prefix /aaa")),
            (
                &[(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")],
                "/aaa/bbb",
                Some("Prefix /aaa/bbb"),
            ),
            (
                &[(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")],
                "/ccc",
                Some("Prefix /"),
            ),
            (&[(Prefix, "/aaa")], "/ccc", None),
            (&[(Prefix, "/foo"), (Exact, "/foo")], "/foo", Some("Exact /foo")),
        ];
        for (rules, request, expected) in table {
            let rules = sorted(rules);
            let got = first_match(&rules, request).map(String::as_str);
            assert_eq!(got, *expected, "rules {rules:?}, request {request}");
        }
    }

    #[test]
    fn matching_is_case_sensitive() {
        assert!(!PathRule::new(Kind::Exact, "/foo").matches("/FOO"));
        assert!(!PathRule::new(Kind::Prefix, "/foo").matches("/FOO/bar"));
    }

    #[test]
    fn the_longer_of_foo_and_foo_slash_comes_first() {
        let rules = sorted(&[(Kind::Prefix, "/foo"), (Kind::Prefix, "/foo/")]);
        assert_eq!(first_match(&rules, "/foo/x").map(String::as_str), Some("Prefix /foo/"));
    }

    #[test]
    fn implementation_specific_is_prefix() {
        assert_eq!(Kind::parse("ImplementationSpecific"), Some(Kind::Prefix));
        assert_eq!(Kind::parse("Regex"), None);
    }
}
