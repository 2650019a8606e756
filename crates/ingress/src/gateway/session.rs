//! A rule's `sessionPersistence` (GEP-1619) as the proxy's persistent affinity (`affinity`): the session names
//! its endpoint (a digest of the address, the same in every replica), carried by a cookie (type Cookie, the
//! default; path `/`, a session cookie unless lifetimeType Permanent, whose Max-Age is the absoluteTimeout) or a
//! header (type Header: the first response names the session in it, and the client sends it back). The proxy
//! ends a session past its `idleTimeout` or `absoluteTimeout` (whatever the cookie's lifetime) itself. The name is
//! `sessionName`, else one made from the route and the rule. A session stays on its backendRef as well as on its
//! endpoint (`compile::Rule::session_backend`), whatever the weights; when its endpoint goes, a new one starts.

use crate::affinity::{Affinity, Carrier, Mode};
use weft_gateway::api::SessionPersistence;

/// The affinity of rule `rule` (its index) of route `route` (`kind/namespace/name`).
pub fn affinity(spec: &SessionPersistence, route: &str, rule: usize) -> Affinity {
    let carrier = match spec.type_.as_deref() {
        Some("Header") => Carrier::Header,
        _ => Carrier::Cookie,
    };
    let name = spec.session_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| {
        let digest = ring::digest::digest(&ring::digest::SHA256, format!("{route}/{rule}").as_bytes());
        let hex: String = digest.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("weft-session-{hex}")
    });
    let permanent = spec
        .cookie_config
        .as_ref()
        .is_some_and(|c| c.lifetime_type.as_deref() == Some("Permanent"));
    let timeout = |t: &Option<String>| {
        t.as_deref()
            .and_then(weft_gateway::duration::parse)
            .filter(|d| !d.is_zero())
    };
    let absolute_timeout = timeout(&spec.absolute_timeout);
    Affinity {
        mode: Mode::Persistent,
        carrier,
        name,
        path: Some("/".into()),
        max_age: absolute_timeout.filter(|_| permanent).map(|d| d.as_secs()),
        idle_timeout: timeout(&spec.idle_timeout),
        absolute_timeout,
        ..Affinity::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use weft_gateway::api::CookieConfig;

    #[test]
    fn cookies_by_default_headers_when_asked() {
        let cookie = affinity(&SessionPersistence::default(), "httproute/infra/r", 0);
        assert_eq!((cookie.mode, cookie.carrier), (Mode::Persistent, Carrier::Cookie));
        assert!(cookie.name.starts_with("weft-session-"), "{}", cookie.name);
        assert_ne!(
            cookie.name,
            affinity(&SessionPersistence::default(), "httproute/infra/r", 1).name
        );
        assert_eq!((cookie.path.as_deref(), cookie.max_age), (Some("/"), None));
        let header = SessionPersistence {
            session_name: Some("session-a".into()),
            type_: Some("Header".into()),
            ..SessionPersistence::default()
        };
        let header = affinity(&header, "httproute/infra/r", 0);
        assert_eq!((header.carrier, header.name.as_str()), (Carrier::Header, "session-a"));
        let permanent = SessionPersistence {
            absolute_timeout: Some("1h".into()),
            cookie_config: Some(CookieConfig {
                lifetime_type: Some("Permanent".into()),
            }),
            ..SessionPersistence::default()
        };
        assert_eq!(affinity(&permanent, "r", 0).max_age, Some(3600));
        // A session cookie does not expire with the absolute timeout: the proxy ends the session.
        let session = SessionPersistence {
            absolute_timeout: Some("1h".into()),
            idle_timeout: Some("30m".into()),
            ..SessionPersistence::default()
        };
        let session = affinity(&session, "r", 0);
        assert_eq!(session.max_age, None);
        assert_eq!(
            (session.absolute_timeout, session.idle_timeout),
            (Some(Duration::from_secs(3600)), Some(Duration::from_secs(1800)))
        );
    }
}
