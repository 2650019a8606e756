//! `affinity: cookie` and `session-cookie-*`: sticky sessions as ingress-nginx's. The cookie names the session;
//! a request carrying one goes to that session's endpoint, one without gets an endpoint and a Set-Cookie.
//!
//! - `affinity-mode: persistent`: the cookie names the endpoint (a digest of its address, the same in every
//!   controller replica); the session stays there as long as the endpoint is in the Service.
//! - `affinity-mode: balanced` (default): the cookie holds a random key, mapped to an endpoint by rendezvous
//!   hashing, so when the Service scales out about 1/n of the sessions move to the new endpoints (ingress-nginx
//!   uses a consistent hash ring for the same effect) and when an endpoint goes only its sessions move.
//!
//! When the session's endpoint fails (connect error), the request is retried on another; with
//! `session-cookie-change-on-failure` the session moves there (a new cookie), else the cookie is kept and the
//! next request tries the session's endpoint again.
//!
//! The Gateway API's `sessionPersistence` (GEP-1619) is the persistent mode, carried by a cookie or by a header
//! (`Carrier::Header`: the response names the session in a header the client sends back).

use crate::upstream::Upstream;
use http::HeaderValue;
use http::header::{HeaderMap, HeaderName, SET_COOKIE};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

pub const DEFAULT_COOKIE: &str = "INGRESSCOOKIE";
/// Random keys drawn for a new balanced session before giving up on avoiding failed endpoints (ingress-nginx's
/// MAX_UPSTREAM_CHECKS_COUNT).
const DRAWS: usize = 20;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Balanced,
    Persistent,
}

/// What carries a session's name between the client and the proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Carrier {
    /// A cookie `name`, set by Set-Cookie.
    #[default]
    Cookie,
    /// A header `name`, in the response that starts the session and in the client's requests after.
    Header,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affinity {
    pub mode: Mode,
    pub carrier: Carrier,
    /// The cookie's (or header's) name.
    pub name: String,
    /// `session-cookie-path`; none: the matched path (or `/` for a regex path).
    pub path: Option<String>,
    pub domain: Option<String>,
    /// `None`, `Lax` or `Strict`.
    pub samesite: Option<&'static str>,
    pub max_age: Option<u64>,
    /// `session-cookie-expires`: seconds from now, sent as an Expires date.
    pub expires: Option<u64>,
    pub secure: bool,
    pub change_on_failure: bool,
}

impl Default for Affinity {
    fn default() -> Affinity {
        Affinity {
            mode: Mode::Balanced,
            carrier: Carrier::Cookie,
            name: DEFAULT_COOKIE.to_string(),
            path: None,
            domain: None,
            samesite: None,
            max_age: None,
            expires: None,
            secure: false,
            change_on_failure: false,
        }
    }
}

/// An endpoint to send the request to, and the cookie value to set if it answers (none: keep the client's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub endpoint: SocketAddr,
    pub set: Option<String>,
}

impl Affinity {
    /// Where a request with `headers` goes, first choice first, at most `tries`.
    pub fn attempts(&self, upstream: &Upstream, headers: &HeaderMap, tries: usize) -> Vec<Attempt> {
        let endpoints = upstream.endpoints();
        let session = self.session(headers);
        let sticky = session.and_then(|value| match self.mode {
            Mode::Persistent => endpoints.iter().copied().find(|e| endpoint_key(*e) == value),
            Mode::Balanced => rendezvous(value, endpoints),
        });
        let mut out: Vec<Attempt> = Vec::new();
        if let Some(endpoint) = sticky {
            out.push(Attempt { endpoint, set: None });
        }
        // A new session (no cookie, or its endpoint is gone) gets a cookie from whichever endpoint answers; an
        // existing one only when it may change on failure.
        let new_cookie = sticky.is_none() || self.change_on_failure;
        match self.mode {
            Mode::Balanced if new_cookie => {
                for _ in 0..DRAWS {
                    if out.len() >= tries.min(endpoints.len()) {
                        break;
                    }
                    let key = crate::proxy::random_hex();
                    if let Some(endpoint) = rendezvous(&key, endpoints).filter(|e| out.iter().all(|a| a.endpoint != *e))
                    {
                        out.push(Attempt {
                            endpoint,
                            set: Some(key),
                        });
                    }
                }
            }
            mode => {
                for endpoint in upstream.attempts() {
                    if out.iter().all(|a| a.endpoint != endpoint) {
                        let set = (new_cookie && mode == Mode::Persistent).then(|| endpoint_key(endpoint));
                        out.push(Attempt { endpoint, set });
                    }
                }
            }
        }
        out.truncate(tries);
        out
    }

    /// The session a request names (its cookie's or header's value), if any.
    fn session<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let value = match self.carrier {
            Carrier::Cookie => crate::annotations::cookie(headers, &self.name),
            Carrier::Header => headers.get(self.name.as_str()).and_then(|v| v.to_str().ok()),
        };
        value.map(str::trim).filter(|v| !v.is_empty())
    }

    /// Whether the session a request names is one of `upstream`'s endpoints (a persistent session; a balanced
    /// one belongs to whichever upstream it is used with).
    pub fn holds(&self, upstream: &Upstream, headers: &HeaderMap) -> bool {
        let session = self.session(headers).filter(|_| self.mode == Mode::Persistent);
        session.is_some_and(|value| upstream.endpoints().iter().any(|e| endpoint_key(*e) == value))
    }

    /// The response header that starts session `value`: the cookie (for a request matched by `matched`, the
    /// rule's path, none for a regex or the default backend, over TLS or not) or the header that names it.
    pub fn session_header(&self, value: &str, matched: Option<&str>, tls: bool) -> Option<(HeaderName, HeaderValue)> {
        match self.carrier {
            Carrier::Cookie => Some((SET_COOKIE, self.set_cookie(value, matched, tls)?)),
            Carrier::Header => Some((
                HeaderName::try_from(self.name.as_str()).ok()?,
                HeaderValue::try_from(value).ok()?,
            )),
        }
    }

    /// The Set-Cookie header of a session `value`.
    fn set_cookie(&self, value: &str, matched: Option<&str>, tls: bool) -> Option<HeaderValue> {
        let path = self.path.as_deref().or(matched).unwrap_or("/");
        let mut cookie = format!("{}={value}; Path={path}", self.name);
        if let Some(domain) = &self.domain {
            cookie.push_str(&format!("; Domain={domain}"));
        }
        if let Some(seconds) = self.expires {
            let at = SystemTime::now() + Duration::from_secs(seconds);
            cookie.push_str(&format!("; Expires={}", httpdate::fmt_http_date(at)));
        }
        if let Some(seconds) = self.max_age {
            cookie.push_str(&format!("; Max-Age={seconds}"));
        }
        if self.secure || tls {
            cookie.push_str("; Secure");
        }
        cookie.push_str("; HttpOnly");
        if let Some(samesite) = self.samesite {
            cookie.push_str(&format!("; SameSite={samesite}"));
        }
        HeaderValue::try_from(cookie).ok()
    }
}

/// `None`, `Lax` or `Strict` in any case, as the SameSite attribute spells it.
pub fn samesite(value: &str) -> Option<&'static str> {
    ["None", "Lax", "Strict"]
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(value.trim()))
}

/// A persistent session's cookie value: a digest of the endpoint's address (hex, 128 bits).
fn endpoint_key(endpoint: SocketAddr) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, endpoint.to_string().as_bytes());
    digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The endpoint whose score with `key` is highest (rendezvous hashing): the same in every replica, and only the
/// sessions of an endpoint that goes or comes change places.
fn rendezvous(key: &str, endpoints: &[SocketAddr]) -> Option<SocketAddr> {
    endpoints.iter().copied().max_by_key(|endpoint| {
        // SipHash with fixed keys: the same score in every process of one build.
        let mut hasher = std::hash::DefaultHasher::new();
        (key, endpoint).hash(&mut hasher);
        hasher.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::COOKIE;

    fn upstream(n: u8) -> Upstream {
        Upstream::new(
            "default/web:80".into(),
            (1..=n).map(|i| SocketAddr::from(([10, 0, 0, i], 80))).collect(),
        )
    }

    fn with_cookie(value: &str) -> HeaderMap {
        HeaderMap::from_iter([(
            COOKIE,
            HeaderValue::try_from(format!("a=b; INGRESSCOOKIE={value}")).unwrap(),
        )])
    }

    #[test]
    fn persistent_sessions_stay_on_their_endpoint_while_it_exists() {
        let affinity = Affinity {
            mode: Mode::Persistent,
            ..Affinity::default()
        };
        let three = upstream(3);
        let first = affinity.attempts(&three, &HeaderMap::new(), 3);
        assert_eq!(first.len(), 3);
        let value = first[0].set.clone().unwrap();
        assert_eq!(value, endpoint_key(first[0].endpoint));
        for _ in 0..5 {
            let again = affinity.attempts(&three, &with_cookie(&value), 3);
            assert_eq!(
                again[0],
                Attempt {
                    endpoint: first[0].endpoint,
                    set: None
                }
            );
            // Without change-on-failure the retries keep the cookie.
            assert!(
                again[1..]
                    .iter()
                    .all(|a| a.set.is_none() && a.endpoint != first[0].endpoint)
            );
        }
        // Its endpoint gone: a new session.
        let gone = Upstream::new(
            "x".into(),
            three
                .endpoints()
                .iter()
                .copied()
                .filter(|e| *e != first[0].endpoint)
                .collect(),
        );
        let moved = affinity.attempts(&gone, &with_cookie(&value), 3);
        assert_eq!(moved.len(), 2);
        assert_eq!(moved[0].set, Some(endpoint_key(moved[0].endpoint)));
    }

    #[test]
    fn balanced_sessions_move_only_for_new_endpoints() {
        let affinity = Affinity::default();
        let (three, four) = (upstream(3), upstream(4));
        let keys: Vec<String> = (0..400).map(|_| crate::proxy::random_hex()).collect();
        let mut moved = 0;
        for key in &keys {
            let before = affinity.attempts(&three, &with_cookie(key), 1)[0].endpoint;
            let after = affinity.attempts(&four, &with_cookie(key), 1)[0].endpoint;
            if before != after {
                assert_eq!(after, SocketAddr::from(([10, 0, 0, 4], 80)));
                moved += 1;
            }
        }
        // About a quarter move to the new endpoint.
        assert!((50..150).contains(&moved), "{moved}");
        // A new session's cookie maps to the endpoint it was sent to.
        let new = affinity.attempts(&three, &HeaderMap::new(), 3);
        assert!(!new.is_empty());
        for attempt in &new {
            assert_eq!(
                rendezvous(attempt.set.as_deref().unwrap(), three.endpoints()),
                Some(attempt.endpoint)
            );
        }
    }

    #[test]
    fn change_on_failure_gives_the_retries_new_cookies() {
        let affinity = Affinity {
            change_on_failure: true,
            ..Affinity::default()
        };
        let three = upstream(3);
        let key = crate::proxy::random_hex();
        let attempts = affinity.attempts(&three, &with_cookie(&key), 3);
        assert_eq!(attempts[0].set, None);
        assert!(attempts.len() >= 2);
        for attempt in &attempts[1..] {
            assert_ne!(attempt.endpoint, attempts[0].endpoint);
            assert_eq!(
                rendezvous(attempt.set.as_deref().unwrap(), three.endpoints()),
                Some(attempt.endpoint)
            );
        }
    }

    #[test]
    fn header_sessions_are_named_by_a_header_both_ways() {
        let affinity = Affinity {
            mode: Mode::Persistent,
            carrier: Carrier::Header,
            name: "Session-A".into(),
            ..Affinity::default()
        };
        let three = upstream(3);
        let first = affinity.attempts(&three, &HeaderMap::new(), 1);
        let value = first[0].set.clone().unwrap();
        let (name, header) = affinity.session_header(&value, Some("/app"), true).unwrap();
        assert_eq!((name.as_str(), header.to_str().unwrap()), ("session-a", value.as_str()));
        let asked = HeaderMap::from_iter([(name, header)]);
        assert!(affinity.holds(&three, &asked));
        assert!(!affinity.holds(&upstream(0), &asked));
        for _ in 0..5 {
            let again = affinity.attempts(&three, &asked, 3);
            assert_eq!(again[0].endpoint, first[0].endpoint);
            assert_eq!(again[0].set, None);
        }
        // A cookie of that name is no session.
        assert!(!affinity.holds(&three, &with_cookie(&value)));
        let cookie = Affinity {
            carrier: Carrier::Cookie,
            name: "INGRESSCOOKIE".into(),
            ..affinity
        };
        assert!(cookie.holds(&three, &with_cookie(&value)));
        assert_eq!(cookie.session_header(&value, None, false).unwrap().0, SET_COOKIE);
    }

    #[test]
    fn set_cookie_attributes() {
        let affinity = Affinity {
            name: "route".into(),
            domain: Some("example.com".into()),
            samesite: samesite("lax"),
            max_age: Some(60),
            expires: Some(60),
            ..Affinity::default()
        };
        let cookie = affinity.set_cookie("abc", Some("/app"), true).unwrap();
        let cookie = cookie.to_str().unwrap();
        assert!(
            cookie.starts_with("route=abc; Path=/app; Domain=example.com; Expires="),
            "{cookie}"
        );
        assert!(
            cookie.ends_with("GMT; Max-Age=60; Secure; HttpOnly; SameSite=Lax"),
            "{cookie}"
        );
        let plain = Affinity::default().set_cookie("abc", None, false).unwrap();
        assert_eq!(plain, "INGRESSCOOKIE=abc; Path=/; HttpOnly");
        assert_eq!(samesite("bogus"), None);
    }
}
