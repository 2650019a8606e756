//! An Ingress path rule and whether a request path matches it, as networking.k8s.io/v1 defines: Exact compares
//! the whole path; Prefix compares `/`-separated elements (a trailing slash on either side ignored, a partial last
//! element never matching); ImplementationSpecific is Prefix here. The paths of a host an Ingress asks regexes
//! for (`use-regex`, `rewrite-target`) are all regexes, as in ingress-nginx: case-insensitive, anchored at the
//! start only.

use std::cmp::Ordering;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Exact,
    Prefix,
    Regex,
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

#[derive(Clone, Debug)]
pub struct PathRule {
    pub kind: Kind,
    /// As written in the Ingress (starts with `/`).
    pub path: String,
    /// The compiled path of a Regex rule.
    regex: Option<regex::Regex>,
}

/// Two rules are the same when written the same (the first Ingress to write one keeps it).
impl PartialEq for PathRule {
    fn eq(&self, other: &Self) -> bool {
        (self.kind, &self.path) == (other.kind, &other.path)
    }
}

impl PathRule {
    pub fn new(kind: Kind, path: &str) -> PathRule {
        PathRule {
            kind,
            path: path.to_string(),
            regex: None,
        }
    }

    /// The rule as a regex (nginx's `~* "^PATH"`), whatever its kind was.
    pub fn to_regex(&self) -> Result<PathRule, regex::Error> {
        let regex = regex::RegexBuilder::new(&format!("^{}", self.path))
            .case_insensitive(true)
            .build()?;
        Ok(PathRule {
            kind: Kind::Regex,
            path: self.path.clone(),
            regex: Some(regex),
        })
    }

    /// The path `target` makes of `request`: `$1`..`$9` replaced by the regex's captures (empty when a group
    /// did not take part), as nginx's `rewrite`.
    pub fn rewrite(&self, request: &str, target: &str) -> String {
        let captures = self.regex.as_ref().and_then(|r| r.captures(request));
        let mut out = String::with_capacity(target.len());
        let mut chars = target.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek().and_then(|d| d.to_digit(10))) {
                ('$', Some(n)) => {
                    chars.next();
                    let group = captures.as_ref().and_then(|c| c.get(n as usize));
                    out.push_str(group.map_or("", |m| m.as_str()));
                }
                _ => out.push(c),
            }
        }
        out
    }

    /// Whether the request path (no query) matches.
    pub fn matches(&self, request: &str) -> bool {
        match self.kind {
            Kind::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(request)),
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
pub fn first_match<'a, T>(rules: &'a [(PathRule, T)], request: &str) -> Option<&'a (PathRule, T)> {
    rules.iter().find(|(rule, _)| rule.matches(request))
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
            let got = first_match(&rules, request).map(|(_, t)| t.as_str());
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
        assert_eq!(
            first_match(&rules, "/foo/x").map(|(_, t)| t.as_str()),
            Some("Prefix /foo/")
        );
    }

    #[test]
    fn implementation_specific_is_prefix() {
        assert_eq!(Kind::parse("ImplementationSpecific"), Some(Kind::Prefix));
        assert_eq!(Kind::parse("Regex"), None);
    }

    /// ingress-nginx's rewrite example (docs/examples/rewrite): path `/something(/|$)(.*)`, target `/$2`.
    #[test]
    fn regex_paths_match_case_insensitively_from_the_start_and_rewrite_with_captures() {
        let rule = PathRule::new(Kind::Prefix, "/something(/|$)(.*)").to_regex().unwrap();
        for (request, rewritten) in [
            ("/something", "/"),
            ("/something/", "/"),
            ("/something/new", "/new"),
            ("/SOMETHING/New", "/New"),
        ] {
            assert!(rule.matches(request), "{request}");
            assert_eq!(rule.rewrite(request, "/$2"), rewritten, "{request}");
        }
        assert!(!rule.matches("/x/something"));
        assert!(!rule.matches("/somethingelse"));
        assert_eq!(rule.rewrite("/something/a", "/p$1q$9"), "/p/q");
        assert!(PathRule::new(Kind::Prefix, "/a(").to_regex().is_err());
    }

    /// Longer paths first, then the first regex that matches: `/foo/bar/[A-Z0-9]{3}` beats `/foo/bar/bar`.
    #[test]
    fn regex_rules_longest_first() {
        let mut rules: Vec<(PathRule, &str)> = ["/foo/bar/bar", "/foo/bar/[A-Z0-9]{3}"]
            .iter()
            .map(|p| (PathRule::new(Kind::Prefix, p).to_regex().unwrap(), *p))
            .collect();
        rules.sort_by(|a, b| a.0.precedence(&b.0));
        assert_eq!(first_match(&rules, "/foo/bar/bar").unwrap().1, "/foo/bar/[A-Z0-9]{3}");
    }
}
