//! Host names as rules write them and as requests carry them: precise names, one-label wildcards (`*.foo.com`
//! matches `bar.foo.com`, not `foo.com` nor `baz.bar.foo.com`), and a request's Host or `:authority` reduced to
//! the name.

/// The name of a Host header or `:authority`: no port, no trailing dot, lower case.
pub fn of_authority(authority: &str) -> String {
    let name = if let Some(rest) = authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8080`.
        rest.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(name, _)| name)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The domain a one-label wildcard rule covers: `*.foo.com` → `foo.com`; none for a precise name.
pub fn wildcard_domain(rule_host: &str) -> Option<&str> {
    rule_host.strip_prefix("*.")
}

/// The domain a wildcard would need to cover `name`: everything after its first label.
pub fn parent(name: &str) -> Option<&str> {
    name.split_once('.')
        .map(|(_, rest)| rest)
        .filter(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_loses_port_case_and_trailing_dot() {
        assert_eq!(of_authority("Foo.Example.com:8080"), "foo.example.com");
        assert_eq!(of_authority("foo.example.com."), "foo.example.com");
        assert_eq!(of_authority("[fd00::1]:443"), "fd00::1");
        assert_eq!(of_authority("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn a_wildcard_covers_exactly_one_label() {
        let domain = wildcard_domain("*.foo.com").unwrap();
        assert_eq!(parent("bar.foo.com"), Some(domain));
        assert_ne!(parent("baz.bar.foo.com"), Some(domain));
        assert_ne!(parent("foo.com"), Some(domain));
        assert_eq!(wildcard_domain("foo.com"), None);
    }
}
