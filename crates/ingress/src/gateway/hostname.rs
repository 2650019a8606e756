//! Gateway API host names: a wildcard `*.example.com` covers any number of labels before `example.com` (unlike
//! Ingress's one), never `example.com` itself; a listener's and a route's names intersect to the more specific.

/// Whether the pattern (precise or wildcard) covers the precise `name`.
pub fn covers(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('*') {
        // `*.example.com`: `name` must end with `.example.com` and have a label before it.
        Some(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
        None => pattern == name,
    }
}

/// The names a listener hostname and a route hostname both allow, as the more specific of the two; none when
/// they do not intersect.
pub fn intersect<'a>(listener: &'a str, route: &'a str) -> Option<&'a str> {
    match (listener.starts_with('*'), route.starts_with('*')) {
        (false, false) => (listener == route).then_some(listener),
        (true, false) => covers(listener, route).then_some(route),
        (false, true) => covers(route, listener).then_some(listener),
        (true, true) => {
            if listener == route || covers(listener, &route[2..]) {
                Some(route)
            } else if covers(route, &listener[2..]) {
                Some(listener)
            } else {
                None
            }
        }
    }
}

/// The names a route serves on a listener: the intersections of its hostnames with the listener's (none: all
/// of the listener's); an empty list when none intersect (the route does not attach).
pub fn effective(listener: Option<&str>, route: &[String]) -> Vec<String> {
    match (listener, route.is_empty()) {
        (None, true) => vec![String::new()],
        (Some(l), true) => vec![l.to_string()],
        (None, false) => route.iter().map(|h| h.to_ascii_lowercase()).collect(),
        (Some(l), false) => {
            let mut names: Vec<String> = route
                .iter()
                .filter_map(|h| intersect(l, &h.to_ascii_lowercase()).map(str::to_string))
                .collect();
            names.sort();
            names.dedup();
            names
        }
    }
}

/// The patterns that could cover `name`, most specific first: the name, then wildcards from the longest
/// suffix to the shortest, then "" (no hostname).
pub fn candidates(name: &str) -> impl Iterator<Item = String> + '_ {
    let wildcards = name
        .match_indices('.')
        .map(move |(i, _)| format!("*{}", &name[i..]))
        .filter(|w| w.len() > 2);
    std::iter::once(name.to_string())
        .chain(wildcards)
        .chain(std::iter::once(String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_spans_any_number_of_labels_but_not_its_domain() {
        assert!(covers("*.wildcard.io", "foo.wildcard.io"));
        assert!(covers("*.wildcard.io", "foo.bar.wildcard.io"));
        assert!(!covers("*.wildcard.io", "wildcard.io"));
        assert!(!covers("*.wildcard.io", "foowildcard.io"));
        assert!(covers("very.specific.com", "very.specific.com"));
    }

    #[test]
    fn intersections_take_the_more_specific_name() {
        assert_eq!(intersect("*.wildcard.io", "foo.wildcard.io"), Some("foo.wildcard.io"));
        assert_eq!(intersect("*.wildcard.io", "wildcard.io"), None);
        assert_eq!(
            intersect("very.specific.com", "*.specific.com"),
            Some("very.specific.com")
        );
        assert_eq!(intersect("*.io", "*.wildcard.io"), Some("*.wildcard.io"));
        assert_eq!(intersect("*.wildcard.io", "*.io"), Some("*.wildcard.io"));
        assert_eq!(intersect("*.a.io", "*.b.io"), None);
        assert_eq!(
            effective(
                Some("*.wildcard.io"),
                &["non.matching.com".into(), "wildcard.io".into()]
            ),
            Vec::<String>::new()
        );
        assert_eq!(effective(None, &[]), vec![String::new()]);
    }

    #[test]
    fn candidates_go_from_the_name_to_wider_wildcards() {
        let all: Vec<String> = candidates("a.b.c").collect();
        assert_eq!(all, ["a.b.c", "*.b.c", "*.c", ""]);
    }
}
