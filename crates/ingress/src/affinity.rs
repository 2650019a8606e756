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
//! (`Carrier::Header`: the response names the session in a header the client sends back), with its timeouts:
//! a session with an idle or absolute timeout names, after its endpoint, when it started and when it was last
//! used (`KEY.START.LAST`, milliseconds since the epoch); past either timeout it is over and the request starts a
//! new session, and with an idle timeout each response renews it (the same stateless way as Envoy's cookie-based
//! sessions: a client that rewrites the times only prolongs its own session).

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
    /// A persistent session is over once unused this long (sessionPersistence's `idleTimeout`).
    pub idle_timeout: Option<Duration>,
    /// A persistent session is over this long after it started (`absoluteTimeout`).
    pub absolute_timeout: Option<Duration>,
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
            idle_timeout: None,
            absolute_timeout: None,
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
        let now = now_ms();
        // The session's endpoint, and when the session started.
        let sticky = match self.mode {
            Mode::Persistent => self.live(headers, now).and_then(|(key, start)| {
                let endpoint = endpoints.iter().copied().find(|e| endpoint_key(*e) == key)?;
                Some((endpoint, start))
            }),
            Mode::Balanced => self
                .session(headers)
                .and_then(|value| rendezvous(value, endpoints))
                .map(|endpoint| (endpoint, now)),
        };
        let mut out: Vec<Attempt> = Vec::new();
        if let Some((endpoint, start)) = sticky {
            // A session with an idle timeout is renewed by each request it carries.
            let renewed = self.mode == Mode::Persistent && self.idle_timeout.is_some();
            let set = renewed.then(|| self.value(endpoint, start, now));
            out.push(Attempt { endpoint, set });
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
                        let set = (new_cookie && mode == Mode::Persistent).then(|| self.value(endpoint, now, now));
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

    /// Whether the session a request names is one of `upstream`'s endpoints (a persistent session within its
    /// timeouts; a balanced one belongs to whichever upstream it is used with).
    pub fn holds(&self, upstream: &Upstream, headers: &HeaderMap) -> bool {
        let session = self.live(headers, now_ms()).filter(|_| self.mode == Mode::Persistent);
        session.is_some_and(|(key, _)| upstream.endpoints().iter().any(|e| endpoint_key(*e) == key))
    }

    /// Whether sessions have timeouts (and their values say when they started and were last used).
    fn timed(&self) -> bool {
        self.idle_timeout.is_some() || self.absolute_timeout.is_some()
    }

    /// The endpoint key of the persistent session a request names, and when it started; none when it names none
    /// or one past a timeout (`now`: milliseconds since the epoch).
    fn live<'h>(&self, headers: &'h HeaderMap, now: u64) -> Option<(&'h str, u64)> {
        let value = self.session(headers)?;
        if !self.timed() {
            return Some((value, now));
        }
        let mut parts = value.splitn(3, '.');
        let key = parts.next()?;
        let start: u64 = parts.next()?.parse().ok()?;
        let last: u64 = parts.next()?.parse().ok()?;
        let past = |timeout: Option<Duration>, since: u64| {
            timeout.is_some_and(|t| u128::from(now.saturating_sub(since)) > t.as_millis())
        };
        (!past(self.absolute_timeout, start) && !past(self.idle_timeout, last)).then_some((key, start))
    }

    /// The value naming a persistent session on `endpoint`, started at `start` and used `now`.
    fn value(&self, endpoint: SocketAddr, start: u64, now: u64) -> String {
        let key = endpoint_key(endpoint);
        match self.timed() {
            true => format!("{key}.{start}.{now}"),
            false => key,
        }
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

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// A persistent session's endpoint key: a digest of the endpoint's address (hex, 128 bits).
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
    fn timed_sessions_end_when_idle_or_old_and_are_renewed_while_used() {
        let affinity = Affinity {
            mode: Mode::Persistent,
            idle_timeout: Some(Duration::from_secs(60)),
            absolute_timeout: Some(Duration::from_secs(3600)),
            ..Affinity::default()
        };
        let three = upstream(3);
        let now = now_ms();
        let first = affinity.attempts(&three, &HeaderMap::new(), 1);
        let value = first[0].set.clone().unwrap();
        let key = endpoint_key(first[0].endpoint);
        let (start, last) = value
            .strip_prefix(&format!("{key}."))
            .and_then(|times| times.split_once('.'))
            .unwrap();
        assert_eq!(start, last);
        assert!(start.parse::<u64>().unwrap() >= now);
        let session = |start: u64, last: u64| with_cookie(&format!("{key}.{start}.{last}"));
        // Used a second ago: the same endpoint, renewed (its start kept, its last use now).
        let used = affinity.attempts(&three, &session(now - 10_000, now - 1_000), 1);
        assert_eq!(used[0].endpoint, first[0].endpoint);
        let renewed = used[0].set.clone().unwrap();
        assert!(renewed.starts_with(&format!("{key}.{}.", now - 10_000)), "{renewed}");
        assert!(affinity.holds(&three, &session(now - 10_000, now - 1_000)));
        // Idle too long, or started too long ago: over, and a new session starts.
        for over in [
            session(now - 10_000, now - 61_000),
            session(now - 3_601_000, now - 1_000),
        ] {
            assert!(!affinity.holds(&three, &over));
            let new = affinity.attempts(&three, &over, 3);
            let set = new[0].set.clone().unwrap();
            assert!(!set.starts_with(&format!("{key}.{}.", now - 10_000)), "{set}");
            assert!(!set.starts_with(&format!("{key}.{}.", now - 3_601_000)), "{set}");
        }
        // A value without times (from before the timeouts) is no session.
        assert!(!affinity.holds(&three, &with_cookie(&key)));
        // Without an idle timeout a live session is not renewed.
        let absolute = Affinity {
            idle_timeout: None,
            ..affinity
        };
        let kept = absolute.attempts(&three, &session(now - 10_000, now - 1_000), 1);
        assert_eq!((kept[0].endpoint, kept[0].set.as_deref()), (first[0].endpoint, None));
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
