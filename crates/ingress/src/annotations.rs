//! The `nginx.ingress.kubernetes.io/*` annotations of an Ingress, parsed once when the table is built into the
//! typed settings of its paths. Configuration stays data: nothing is generated for an interpreter, so the snippet
//! annotations (raw nginx configuration) are refused, and every other annotation weft does not implement is
//! reported, never silently ignored.

use crate::affinity::{self, Affinity};
use crate::auth::BasicAuth;
use crate::cors::{self, Cors, Origins};
use crate::proxyssl::ProxySsl;
use crate::ratelimit::Limits;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// The annotations weft implements (names without the prefix).
pub const SUPPORTED: &[&str] = &[
    "ssl-redirect",
    "force-ssl-redirect",
    "use-regex",
    "rewrite-target",
    "app-root",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "x-forwarded-prefix",
    "upstream-vhost",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "whitelist-source-range",
    "denylist-source-range",
    "backend-protocol",
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
    "canary-by-header-pattern",
    "affinity",
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-domain",
    "session-cookie-samesite",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-secure",
    "session-cookie-change-on-failure",
    "limit-rps",
    "limit-rpm",
    "limit-connections",
    "limit-burst-multiplier",
    "limit-whitelist",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
    "auth-type",
    "auth-secret",
    "auth-secret-type",
    "auth-realm",
    "custom-http-errors",
    "default-backend",
    "proxy-ssl-secret",
    "proxy-ssl-verify",
    "proxy-ssl-name",
    "proxy-ssl-server-name",
];

/// Annotations that are raw nginx configuration: refused, as ingress-nginx itself does by default since
/// CVE-2021-25742 (they let anyone who may write an Ingress run configuration in the controller).
pub const SNIPPETS: &[&str] = &[
    "configuration-snippet",
    "server-snippet",
    "auth-snippet",
    "stream-snippet",
    "modsecurity-snippet",
];

/// ingress-nginx's `proxy-body-size` default (1m).
pub const DEFAULT_BODY_LIMIT: u64 = 1024 * 1024;
/// ingress-nginx's `proxy-read-timeout` and `proxy-send-timeout` defaults.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a path sends its requests instead of to its backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub location: HeaderValue,
    pub code: StatusCode,
}

/// `backend-protocol`: how the upstream is spoken to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackendProtocol {
    /// HTTP/1.1 in cleartext.
    #[default]
    Http,
    /// HTTP/1.1 over TLS whose certificate is not verified (ingress-nginx without `proxy-ssl-verify`).
    Https,
    /// HTTP/2 in cleartext with prior knowledge (h2c), as gRPC servers take it.
    Grpc,
    /// HTTP/2 over TLS (ALPN h2), certificate not verified.
    Grpcs,
}

impl BackendProtocol {
    /// ingress-nginx's names, in any case; `AUTO_HTTP` and `FCGI` are not implemented.
    fn parse(value: &str) -> Option<BackendProtocol> {
        match value.trim().to_ascii_uppercase().as_str() {
            "HTTP" => Some(BackendProtocol::Http),
            "HTTPS" => Some(BackendProtocol::Https),
            "GRPC" => Some(BackendProtocol::Grpc),
            "GRPCS" => Some(BackendProtocol::Grpcs),
            _ => None,
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, BackendProtocol::Https | BackendProtocol::Grpcs)
    }

    pub fn http2(self) -> bool {
        matches!(self, BackendProtocol::Grpc | BackendProtocol::Grpcs)
    }
}

/// How requests are split between a route's backend and its canary's (`canary: "true"` and `canary-*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Canary {
    /// `canary-by-header`: `always` sends to the canary, `never` to the main backend.
    pub header: Option<HeaderName>,
    /// `canary-by-header-value`: the header's value that sends to the canary (instead of `always`).
    pub header_value: Option<HeaderValue>,
    /// `canary-by-header-pattern`: a regex the header's value matches (anywhere) to send to the canary; ignored
    /// when there is a `canary-by-header-value`.
    pub header_pattern: Option<Pattern>,
    /// `canary-by-cookie`: `always` sends to the canary, `never` to the main backend.
    pub cookie: Option<String>,
    /// `canary-weight` out of `canary-weight-total` (default 100) go to the canary.
    pub weight: u32,
    pub weight_total: u32,
}

impl Canary {
    /// Whether a request goes to the canary: by header, then by cookie, then by weight (`roll` is uniform in
    /// `0..weight_total`), as ingress-nginx. A header or cookie of any other value is ignored.
    pub fn takes(&self, headers: &HeaderMap, roll: u32) -> bool {
        if let Some(value) = self.header.as_ref().and_then(|h| headers.get(h)) {
            match (&self.header_value, &self.header_pattern) {
                (Some(wanted), _) if value == wanted => return true,
                (Some(_), _) => {}
                (None, Some(pattern)) if value.to_str().is_ok_and(|v| pattern.0.is_match(v)) => return true,
                (None, Some(_)) => {}
                (None, None) if value == "always" => return true,
                (None, None) if value == "never" => return false,
                (None, None) => {}
            }
        }
        if let Some(value) = self.cookie.as_deref().and_then(|name| cookie(headers, name)) {
            match value {
                "always" => return true,
                "never" => return false,
                _ => {}
            }
        }
        roll < self.weight
    }
}

/// A regex compared by its text.
#[derive(Clone, Debug)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

/// The value of cookie `name` in the request's Cookie headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The settings of an Ingress's paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotations {
    /// `ssl-redirect` (default on; takes effect when the Ingress has `tls`).
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`: 308 to HTTPS even without `tls` (TLS ended before weft).
    pub force_ssl_redirect: bool,
    /// `use-regex`: the paths (of the whole host) are case-insensitive regexes anchored at the start.
    pub use_regex: bool,
    /// `rewrite-target`: the path the upstream gets, `$1`.. from the path regex's captures.
    pub rewrite_target: Option<String>,
    /// `app-root`: `/` answers 302 to it.
    pub app_root: Option<HeaderValue>,
    /// `permanent-redirect` (301, or `permanent-redirect-code`), else `temporal-redirect` (302).
    pub redirect: Option<Redirect>,
    /// `x-forwarded-prefix`: sent as the X-Forwarded-Prefix header.
    pub forwarded_prefix: Option<HeaderValue>,
    /// `upstream-vhost`: the Host header the upstream gets.
    pub upstream_vhost: Option<HeaderValue>,
    /// `proxy-body-size`: the largest request body, none: unlimited.
    pub body_limit: Option<u64>,
    /// `proxy-connect-timeout`; none: the proxy's own.
    pub connect_timeout: Option<Duration>,
    /// `proxy-read-timeout`: the longest wait for the upstream's response head and between its body's chunks.
    pub read_timeout: Duration,
    /// `proxy-send-timeout`: the longest wait between two chunks of the request body sent upstream.
    pub send_timeout: Duration,
    /// `whitelist-source-range`: when not empty, only clients in these ranges are served (else 403).
    pub allow: Vec<IpNet>,
    /// `denylist-source-range`: clients in these ranges get 403.
    pub deny: Vec<IpNet>,
    /// `backend-protocol`.
    pub backend_protocol: BackendProtocol,
    /// `canary: "true"`: the Ingress's paths are the canaries of the same paths of another Ingress.
    pub canary: Option<Canary>,
    /// `affinity: cookie` and `session-cookie-*`.
    pub affinity: Option<Affinity>,
    /// `limit-*` (none set: no limits).
    pub limits: Limits,
    /// `enable-cors` and `cors-*`.
    pub cors: Option<Cors>,
    /// `auth-type: basic` and `auth-*`.
    pub auth: Option<BasicAuth>,
    /// `custom-http-errors`: upstream answers of these codes are replaced by the error backend's.
    pub custom_errors: Vec<u16>,
    /// `default-backend`: a Service of the Ingress's namespace for paths without endpoints and custom errors.
    pub default_backend: Option<String>,
    /// `proxy-ssl-*`: verified TLS and a client certificate to HTTPS and GRPCS upstreams.
    pub proxy_ssl: ProxySsl,
}

impl Default for Annotations {
    fn default() -> Self {
        Annotations {
            ssl_redirect: true,
            force_ssl_redirect: false,
            use_regex: false,
            rewrite_target: None,
            app_root: None,
            redirect: None,
            forwarded_prefix: None,
            upstream_vhost: None,
            body_limit: Some(DEFAULT_BODY_LIMIT),
            connect_timeout: None,
            read_timeout: DEFAULT_IO_TIMEOUT,
            send_timeout: DEFAULT_IO_TIMEOUT,
            allow: Vec::new(),
            deny: Vec::new(),
            backend_protocol: BackendProtocol::Http,
            canary: None,
            affinity: None,
            limits: Limits::default(),
            cors: None,
            auth: None,
            custom_errors: Vec::new(),
            default_backend: None,
            proxy_ssl: ProxySsl::default(),
        }
    }
}

/// Something wrong with one annotation: the event's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Complaint {
    pub reason: &'static str,
    pub message: String,
}

impl Annotations {
    /// The settings an Ingress's annotations ask for, and what is wrong with them (an annotation with a bad
    /// value keeps its default).
    pub fn parse(annotations: Option<&BTreeMap<String, String>>) -> (Annotations, Vec<Complaint>) {
        let mut parsed = Annotations::default();
        let mut complaints = Vec::new();
        let mut permanent_code = StatusCode::MOVED_PERMANENTLY;
        let (mut permanent, mut temporal) = (None, None);
        let (mut cookie_affinity, mut affinity) = (false, Affinity::default());
        let (mut enable_cors, mut cors) = (false, Cors::default());
        let (mut auth_type, mut auth) = (
            None::<String>,
            BasicAuth {
                secret: String::new(),
                map: false,
                realm: String::new(),
            },
        );
        let (mut is_canary, mut canary) = (
            false,
            Canary {
                weight_total: 100,
                ..Canary::default()
            },
        );
        for (key, value) in annotations.into_iter().flatten() {
            let Some(name) = key.strip_prefix(PREFIX) else { continue };
            let invalid = |why: &str| Complaint {
                reason: "InvalidAnnotation",
                message: format!("annotation {key}: {value:?} {why}; its default applies"),
            };
            let result: Result<(), Complaint> = match name {
                "ssl-redirect" => boolean(value)
                    .map(|b| parsed.ssl_redirect = b)
                    .ok_or_else(|| invalid(NOT_BOOL)),
                "force-ssl-redirect" => boolean(value)
                    .map(|b| parsed.force_ssl_redirect = b)
                    .ok_or_else(|| invalid(NOT_BOOL)),
                "use-regex" => boolean(value)
                    .map(|b| parsed.use_regex = b)
                    .ok_or_else(|| invalid(NOT_BOOL)),
                "rewrite-target" => {
                    parsed.rewrite_target = Some(value.clone());
                    Ok(())
                }
                "app-root" => header(value, true)
                    .map(|h| parsed.app_root = Some(h))
                    .ok_or_else(|| invalid("is not a path")),
                "permanent-redirect" => header(value, false)
                    .map(|h| permanent = Some(h))
                    .ok_or_else(|| invalid("is not a URL")),
                "permanent-redirect-code" => value
                    .parse::<u16>()
                    .ok()
                    .filter(|c| (300..=308).contains(c))
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .map(|c| permanent_code = c)
                    .ok_or_else(|| invalid("is not a redirect code (300-308)")),
                "temporal-redirect" => header(value, false)
                    .map(|h| temporal = Some(h))
                    .ok_or_else(|| invalid("is not a URL")),
                "x-forwarded-prefix" => header(value, false)
                    .map(|h| parsed.forwarded_prefix = Some(h))
                    .ok_or_else(|| invalid("is not a header value")),
                "upstream-vhost" => header(value, false)
                    .map(|h| parsed.upstream_vhost = Some(h))
                    .ok_or_else(|| invalid("is not a host")),
                "proxy-body-size" => size(value)
                    .map(|s| parsed.body_limit = s)
                    .ok_or_else(|| invalid("is not a size (a number, then k, m or g)")),
                "proxy-connect-timeout" => seconds(value)
                    .map(|d| parsed.connect_timeout = Some(d))
                    .ok_or_else(|| invalid(NOT_SECONDS)),
                "proxy-read-timeout" => seconds(value)
                    .map(|d| parsed.read_timeout = d)
                    .ok_or_else(|| invalid(NOT_SECONDS)),
                "proxy-send-timeout" => seconds(value)
                    .map(|d| parsed.send_timeout = d)
                    .ok_or_else(|| invalid(NOT_SECONDS)),
                "whitelist-source-range" => cidrs(value).map(|c| parsed.allow = c).ok_or_else(|| invalid(NOT_CIDRS)),
                "denylist-source-range" => cidrs(value).map(|c| parsed.deny = c).ok_or_else(|| invalid(NOT_CIDRS)),
                "backend-protocol" => BackendProtocol::parse(value)
                    .map(|p| parsed.backend_protocol = p)
                    .ok_or_else(|| invalid("is not HTTP, HTTPS, GRPC or GRPCS (AUTO_HTTP and FCGI are not supported)")),
                "canary" => boolean(value).map(|b| is_canary = b).ok_or_else(|| invalid(NOT_BOOL)),
                "canary-by-header" => HeaderName::try_from(value.trim())
                    .ok()
                    .map(|h| canary.header = Some(h))
                    .ok_or_else(|| invalid("is not a header name")),
                "canary-by-header-value" => header(value, false)
                    .map(|h| canary.header_value = Some(h))
                    .ok_or_else(|| invalid("is not a header value")),
                "canary-by-cookie" => Some(value.trim())
                    .filter(|c| !c.is_empty() && !c.contains([';', '=', ' ']))
                    .map(|c| canary.cookie = Some(c.to_string()))
                    .ok_or_else(|| invalid("is not a cookie name")),
                "canary-weight" => value
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .map(|w| canary.weight = w)
                    .ok_or_else(|| invalid("is not a whole number")),
                "canary-weight-total" => value
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|t| *t > 0)
                    .map(|t| canary.weight_total = t)
                    .ok_or_else(|| invalid("is not a whole number above 0")),
                "canary-by-header-pattern" => regex::Regex::new(value.trim())
                    .ok()
                    .filter(|_| !value.trim().is_empty())
                    .map(|r| canary.header_pattern = Some(Pattern(r)))
                    .ok_or_else(|| invalid("is not a regex")),
                "affinity" => match value.trim() {
                    "cookie" => {
                        cookie_affinity = true;
                        Ok(())
                    }
                    _ => Err(invalid("is not \"cookie\" (the only affinity)")),
                },
                "affinity-mode" => match value.trim() {
                    "balanced" => Some(affinity::Mode::Balanced),
                    "persistent" => Some(affinity::Mode::Persistent),
                    _ => None,
                }
                .map(|mode| affinity.mode = mode)
                .ok_or_else(|| invalid("is not \"balanced\" or \"persistent\"")),
                "session-cookie-name" => cookie_name(value)
                    .map(|n| affinity.name = n)
                    .ok_or_else(|| invalid("is not a cookie name")),
                "session-cookie-path" => cookie_attribute(value)
                    .filter(|p| p.starts_with('/'))
                    .map(|p| affinity.path = Some(p))
                    .ok_or_else(|| invalid("is not a path")),
                "session-cookie-domain" => cookie_attribute(value)
                    .map(|d| affinity.domain = Some(d))
                    .ok_or_else(|| invalid("is not a domain")),
                "session-cookie-samesite" => affinity::samesite(value)
                    .map(|s| affinity.samesite = Some(s))
                    .ok_or_else(|| invalid("is not None, Lax or Strict")),
                "session-cookie-max-age" => whole(value)
                    .map(|n| affinity.max_age = Some(n))
                    .ok_or_else(|| invalid(NOT_SECONDS)),
                "session-cookie-expires" => whole(value)
                    .map(|n| affinity.expires = Some(n))
                    .ok_or_else(|| invalid(NOT_SECONDS)),
                "session-cookie-secure" => boolean(value)
                    .map(|b| affinity.secure = b)
                    .ok_or_else(|| invalid(NOT_BOOL)),
                "session-cookie-change-on-failure" => boolean(value)
                    .map(|b| affinity.change_on_failure = b)
                    .ok_or_else(|| invalid(NOT_BOOL)),
                "limit-rps" => limit(value)
                    .map(|n| parsed.limits.rps = n)
                    .ok_or_else(|| invalid(NOT_WHOLE)),
                "limit-rpm" => limit(value)
                    .map(|n| parsed.limits.rpm = n)
                    .ok_or_else(|| invalid(NOT_WHOLE)),
                "limit-connections" => limit(value)
                    .map(|n| parsed.limits.connections = n)
                    .ok_or_else(|| invalid(NOT_WHOLE)),
                "limit-burst-multiplier" => limit(value)
                    .flatten()
                    .map(|n| parsed.limits.burst_multiplier = n)
                    .ok_or_else(|| invalid("is not a whole number above 0")),
                "limit-whitelist" => cidrs(value)
                    .map(|c| parsed.limits.whitelist = c)
                    .ok_or_else(|| invalid(NOT_CIDRS)),
                "enable-cors" => boolean(value).map(|b| enable_cors = b).ok_or_else(|| invalid(NOT_BOOL)),
                "cors-allow-origin" => {
                    let (origins, bad) = Origins::parse(value);
                    cors.origins = origins;
                    match bad.is_empty() {
                        true => Ok(()),
                        false => Err(Complaint {
                            reason: "InvalidAnnotation",
                            message: format!(
                                "annotation {key}: {bad:?} are not origins (scheme://host[:port]); they are left out"
                            ),
                        }),
                    }
                }
                "cors-allow-methods" => cors::token_list(value)
                    .map(|v| cors.methods = v)
                    .ok_or_else(|| invalid("is not a comma-separated list of methods")),
                "cors-allow-headers" => cors::token_list(value)
                    .map(|v| cors.headers = v)
                    .ok_or_else(|| invalid("is not a comma-separated list of header names")),
                "cors-expose-headers" => cors::token_list(value)
                    .map(|v| cors.expose = Some(v))
                    .ok_or_else(|| invalid("is not a comma-separated list of header names")),
                "cors-allow-credentials" => boolean(value)
                    .map(|b| cors.credentials = b)
                    .ok_or_else(|| invalid(NOT_BOOL)),
                "cors-max-age" => whole(value)
                    .map(|n| cors.max_age = n)
                    .ok_or_else(|| invalid(NOT_SECONDS)),
                "auth-type" => match value.trim() {
                    "basic" => {
                        auth_type = Some("basic".into());
                        Ok(())
                    }
                    _ => {
                        // An authentication weft cannot do must not leave the paths open.
                        auth_type = Some(value.trim().into());
                        Err(Complaint {
                            reason: "InvalidAnnotation",
                            message: format!(
                                "annotation {key}: {value:?} is not supported (only basic); the paths answer 503"
                            ),
                        })
                    }
                },
                "auth-secret" => Some(value.trim())
                    .filter(|s| !s.is_empty())
                    .map(|s| auth.secret = s.to_string())
                    .ok_or_else(|| invalid("is not a Secret name")),
                "auth-secret-type" => match value.trim() {
                    "auth-file" => Some(false),
                    "auth-map" => Some(true),
                    _ => None,
                }
                .map(|map| auth.map = map)
                .ok_or_else(|| invalid("is not auth-file or auth-map")),
                "auth-realm" => {
                    auth.realm = value.clone();
                    Ok(())
                }
                "custom-http-errors" => codes(value)
                    .map(|c| parsed.custom_errors = c)
                    .ok_or_else(|| invalid("is not a comma-separated list of HTTP status codes (400-599)")),
                "default-backend" => Some(value.trim())
                    .filter(|s| !s.is_empty() && !s.contains('/'))
                    .map(|s| parsed.default_backend = Some(s.to_string()))
                    .ok_or_else(|| invalid("is not the name of a Service in the Ingress's namespace")),
                "proxy-ssl-secret" => Some(value.trim())
                    .filter(|s| !s.is_empty())
                    .map(|s| parsed.proxy_ssl.secret = Some(s.to_string()))
                    .ok_or_else(|| invalid("is not a Secret name")),
                "proxy-ssl-verify" => on_off(value)
                    .map(|b| parsed.proxy_ssl.verify = b)
                    .ok_or_else(|| invalid(NOT_ON_OFF)),
                "proxy-ssl-name" => Some(value.trim())
                    .filter(|s| !s.is_empty())
                    .map(|s| parsed.proxy_ssl.name = Some(s.to_string()))
                    .ok_or_else(|| invalid("is not a name")),
                "proxy-ssl-server-name" => on_off(value)
                    .map(|b| parsed.proxy_ssl.server_name = b)
                    .ok_or_else(|| invalid(NOT_ON_OFF)),
                _ if SNIPPETS.contains(&name) => Err(Complaint {
                    reason: "SnippetRefused",
                    message: format!(
                        "annotation {key} is refused: weft takes configuration as data and never runs nginx \
                         configuration from an Ingress (ingress-nginx also refuses snippets by default since \
                         CVE-2021-25742)"
                    ),
                }),
                _ => Err(Complaint {
                    reason: "UnsupportedAnnotation",
                    message: format!("annotation {key} is not supported by weft and has no effect"),
                }),
            };
            if let Err(complaint) = result {
                complaints.push(complaint);
            }
        }
        parsed.redirect = match (permanent, temporal) {
            (Some(location), _) => Some(Redirect {
                location,
                code: permanent_code,
            }),
            (None, Some(location)) => Some(Redirect {
                location,
                code: StatusCode::FOUND,
            }),
            (None, None) => None,
        };
        parsed.affinity = cookie_affinity.then_some(affinity);
        parsed.cors = enable_cors.then_some(cors);
        parsed.auth = auth_type.map(|kind| match kind.as_str() {
            "basic" => auth,
            // Refused above; an empty Secret name makes the paths answer 503.
            _ => BasicAuth {
                secret: String::new(),
                ..auth
            },
        });
        parsed.canary = is_canary.then(|| Canary {
            weight: canary.weight.min(canary.weight_total),
            ..canary
        });
        (parsed, complaints)
    }

    /// Whether the paths must be regexes: `use-regex`, or a `rewrite-target` other than the path itself
    /// (ingress-nginx makes every rewritten location a regex location).
    pub fn wants_regex(&self, path: &str) -> bool {
        self.use_regex || self.rewrite_target.as_deref().is_some_and(|t| t != path)
    }

    /// Whether `client` may be served: not denied, and allowed when there is an allow list.
    pub fn admits(&self, client: IpAddr) -> bool {
        let client = canonical(client);
        let within = |ranges: &[IpNet]| ranges.iter().any(|r| r.contains(&client));
        !within(&self.deny) && (self.allow.is_empty() || within(&self.allow))
    }
}

const NOT_BOOL: &str = "is not \"true\" or \"false\"";
const NOT_SECONDS: &str = "is not a number of seconds";
const NOT_CIDRS: &str = "is not a comma-separated list of CIDRs";
const NOT_WHOLE: &str = "is not a whole number";
const NOT_ON_OFF: &str = "is not \"on\" or \"off\"";

/// nginx's flags.
fn on_off(value: &str) -> Option<bool> {
    match value.trim() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

fn whole(value: &str) -> Option<u64> {
    value.trim().parse().ok()
}

/// A `limit-*` count; `0` is no limit, as in ingress-nginx.
fn limit(value: &str) -> Option<Option<NonZeroU32>> {
    value.trim().parse::<u32>().ok().map(NonZeroU32::new)
}

/// A cookie name: an HTTP token.
fn cookie_name(value: &str) -> Option<String> {
    let value = value.trim();
    HeaderName::try_from(value).ok().map(|_| value.to_string())
}

/// A cookie attribute's value: printable, without `;`.
fn cookie_attribute(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty() && value.chars().all(|c| c.is_ascii_graphic() && c != ';')).then(|| value.to_string())
}

/// Comma-separated HTTP error codes.
fn codes(value: &str) -> Option<Vec<u16>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u16>().ok().filter(|c| (400..=599).contains(c)))
        .collect::<Option<Vec<u16>>>()
        .filter(|c| !c.is_empty())
}

fn boolean(value: &str) -> Option<bool> {
    match value.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A header value; a path must start with `/`.
fn header(value: &str, path: bool) -> Option<HeaderValue> {
    let value = value.trim();
    if value.is_empty() || (path && !value.starts_with('/')) {
        return None;
    }
    HeaderValue::try_from(value).ok()
}

/// An nginx size (bytes, or with k, m, g), none: unlimited (`0`).
fn size(value: &str) -> Option<Option<u64>> {
    let value = value.trim();
    let (digits, unit) = match value.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&value[..i], c.to_ascii_lowercase()),
        _ => (value, 'b'),
    };
    let multiplier: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    let bytes = n.checked_mul(multiplier)?;
    Some((bytes > 0).then_some(bytes))
}

/// Unitless seconds, as ingress-nginx's timeout annotations.
fn seconds(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// Comma-separated CIDRs; a bare address is its own /32 or /128.
fn cidrs(value: &str) -> Option<Vec<IpNet>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
                .map(|n| n.trunc())
        })
        .collect()
}

/// An IPv4 client on a dual-stack socket as its IPv4 address, so IPv4 ranges apply to it.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> (Annotations, Vec<Complaint>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect();
        Annotations::parse(Some(&map))
    }

    #[test]
    fn no_annotations_are_ingress_nginx_defaults() {
        let (a, complaints) = Annotations::parse(None);
        assert!(complaints.is_empty());
        assert_eq!(a, Annotations::default());
        assert_eq!(a.body_limit, Some(1024 * 1024));
        assert!(a.ssl_redirect && !a.force_ssl_redirect && !a.use_regex);
        assert_eq!(
            (a.read_timeout, a.send_timeout),
            (DEFAULT_IO_TIMEOUT, DEFAULT_IO_TIMEOUT)
        );
    }

    #[test]
    fn supported_annotations_become_typed_settings() {
        let (a, complaints) = parse(&[
            ("ssl-redirect", "false"),
            ("force-ssl-redirect", "true"),
            ("use-regex", "true"),
            ("rewrite-target", "/$2"),
            ("app-root", "/app1"),
            ("permanent-redirect", "https://example.com/x"),
            ("permanent-redirect-code", "308"),
            ("x-forwarded-prefix", "/pre"),
            ("upstream-vhost", "internal.svc"),
            ("proxy-body-size", "8k"),
            ("proxy-connect-timeout", "3"),
            ("proxy-read-timeout", "120"),
            ("proxy-send-timeout", "30"),
            ("whitelist-source-range", "10.0.0.0/8, 192.168.1.1"),
            ("denylist-source-range", "10.1.0.0/16"),
        ]);
        assert!(complaints.is_empty(), "{complaints:?}");
        assert!(!a.ssl_redirect && a.force_ssl_redirect && a.use_regex);
        assert_eq!(a.rewrite_target.as_deref(), Some("/$2"));
        assert_eq!(a.app_root.unwrap(), "/app1");
        assert_eq!(
            a.redirect,
            Some(Redirect {
                location: HeaderValue::from_static("https://example.com/x"),
                code: StatusCode::PERMANENT_REDIRECT
            })
        );
        assert_eq!(a.forwarded_prefix.unwrap(), "/pre");
        assert_eq!(a.upstream_vhost.unwrap(), "internal.svc");
        assert_eq!(a.body_limit, Some(8192));
        assert_eq!(a.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(a.read_timeout, Duration::from_secs(120));
        assert_eq!(a.send_timeout, Duration::from_secs(30));
        assert_eq!(
            a.allow,
            ["10.0.0.0/8".parse().unwrap(), "192.168.1.1/32".parse().unwrap()]
        );
        assert_eq!(a.deny, ["10.1.0.0/16".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn temporal_redirect_is_302_and_permanent_wins() {
        let (a, _) = parse(&[("temporal-redirect", "https://t.example/")]);
        assert_eq!(a.redirect.unwrap().code, StatusCode::FOUND);
        let (a, _) = parse(&[
            ("temporal-redirect", "https://t/"),
            ("permanent-redirect", "https://p/"),
        ]);
        let redirect = a.redirect.unwrap();
        assert_eq!(
            (redirect.location, redirect.code),
            (HeaderValue::from_static("https://p/"), StatusCode::MOVED_PERMANENTLY)
        );
    }

    #[test]
    fn nginx_sizes() {
        for (text, bytes) in [
            ("0", None),
            ("1m", Some(1 << 20)),
            ("1M", Some(1 << 20)),
            ("10k", Some(10 << 10)),
            ("2g", Some(2 << 30)),
            ("500", Some(500)),
        ] {
            assert_eq!(size(text), Some(bytes), "{text}");
        }
        for bad in ["", "m", "1t", "-1", "1.5m", "99999999999999999g"] {
            assert_eq!(size(bad), None, "{bad}");
        }
    }

    #[test]
    fn unsupported_and_snippet_annotations_and_bad_values_are_complained_of() {
        let (a, complaints) = parse(&[
            ("configuration-snippet", "more_set_headers \"X: y\";"),
            ("server-snippet", "location /x {}"),
            ("auth-tls-secret", "default/ca"),
            ("proxy-body-size", "lots"),
            ("use-regex", "yes"),
            ("whitelist-source-range", "10.0.0.0/33"),
            ("permanent-redirect-code", "200"),
        ]);
        let reasons: Vec<(&str, bool)> = complaints
            .iter()
            .map(|c| (c.reason, c.message.contains(PREFIX)))
            .collect();
        assert_eq!(
            reasons,
            [
                ("UnsupportedAnnotation", true),
                ("SnippetRefused", true),
                ("InvalidAnnotation", true),
                ("InvalidAnnotation", true),
                ("SnippetRefused", true),
                ("InvalidAnnotation", true),
                ("InvalidAnnotation", true),
            ],
            "{complaints:?}"
        );
        assert!(
            complaints[1].message.contains("configuration-snippet") && complaints[1].message.contains("CVE-2021-25742")
        );
        assert!(complaints[0].message.contains("auth-tls-secret"));
        // Bad values keep the defaults.
        assert_eq!(a, Annotations::default());
    }

    #[test]
    fn other_prefixes_are_not_ours() {
        let map = BTreeMap::from([("kubernetes.io/ingress.class".to_string(), "nginx".to_string())]);
        assert!(Annotations::parse(Some(&map)).1.is_empty());
    }

    #[test]
    fn source_ranges() {
        let (a, _) = parse(&[
            ("whitelist-source-range", "10.0.0.0/8"),
            ("denylist-source-range", "10.9.0.0/16"),
        ]);
        assert!(a.admits("10.1.2.3".parse().unwrap()));
        assert!(a.admits("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!a.admits("10.9.0.1".parse().unwrap()));
        assert!(!a.admits("192.168.0.1".parse().unwrap()));
        assert!(Annotations::default().admits("192.168.0.1".parse().unwrap()));
    }

    #[test]
    fn regex_paths_with_use_regex_or_a_rewrite() {
        let (a, _) = parse(&[("rewrite-target", "/")]);
        assert!(a.wants_regex("/foo") && !a.wants_regex("/"));
        assert!(parse(&[("use-regex", "true")]).0.wants_regex("/"));
        assert!(!Annotations::default().wants_regex("/foo"));
    }

    #[test]
    fn backend_protocols_in_any_case_and_unsupported_ones_keep_http() {
        for (text, protocol, tls, http2) in [
            ("HTTP", BackendProtocol::Http, false, false),
            ("https", BackendProtocol::Https, true, false),
            ("GRPC", BackendProtocol::Grpc, false, true),
            ("GRPCS", BackendProtocol::Grpcs, true, true),
        ] {
            let (a, complaints) = parse(&[("backend-protocol", text)]);
            assert!(complaints.is_empty(), "{complaints:?}");
            assert_eq!(a.backend_protocol, protocol, "{text}");
            assert_eq!((protocol.tls(), protocol.http2()), (tls, http2), "{text}");
        }
        for bad in ["FCGI", "AUTO_HTTP", "h2"] {
            let (a, complaints) = parse(&[("backend-protocol", bad)]);
            assert_eq!(a.backend_protocol, BackendProtocol::Http);
            assert_eq!(complaints[0].reason, "InvalidAnnotation", "{bad}");
        }
    }

    #[test]
    fn canary_by_header_then_cookie_then_weight() {
        let (a, complaints) = parse(&[
            ("canary", "true"),
            ("canary-by-header", "X-Canary"),
            ("canary-by-cookie", "beta"),
            ("canary-weight", "30"),
        ]);
        assert!(complaints.is_empty(), "{complaints:?}");
        let canary = a.canary.unwrap();
        assert_eq!((canary.weight, canary.weight_total), (30, 100));
        let headers = |pairs: &[(&'static str, &'static str)]| -> HeaderMap {
            pairs
                .iter()
                .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
                .collect()
        };
        for (pairs, roll, takes) in [
            (&[][..], 29, true),
            (&[][..], 30, false),
            (&[("x-canary", "always")][..], 99, true),
            (&[("x-canary", "never")][..], 0, false),
            // The header wins over the cookie; a value of neither is ignored.
            (&[("x-canary", "never"), ("cookie", "beta=always")][..], 0, false),
            (&[("x-canary", "maybe"), ("cookie", "a=1; beta=always")][..], 99, true),
            (&[("cookie", "beta=never")][..], 0, false),
            (&[("cookie", "beta=other")][..], 0, true),
        ] {
            assert_eq!(canary.takes(&headers(pairs), roll), takes, "{pairs:?} {roll}");
        }
        let (a, _) = parse(&[
            ("canary", "true"),
            ("canary-by-header", "x-canary"),
            ("canary-by-header-value", "v2"),
            ("canary-weight", "500"),
            ("canary-weight-total", "1000"),
        ]);
        let canary = a.canary.unwrap();
        assert!(canary.takes(&headers(&[("x-canary", "v2")]), 999));
        assert!(!canary.takes(&headers(&[("x-canary", "always")]), 999));
        assert!(canary.takes(&headers(&[("x-canary", "always")]), 499));
        // Without canary: "true" the canary-* annotations do nothing.
        assert_eq!(parse(&[("canary-weight", "50")]).0.canary, None);
    }

    #[test]
    fn canary_by_header_pattern_unless_a_value_is_given() {
        let (a, complaints) = parse(&[
            ("canary", "true"),
            ("canary-by-header", "x-canary"),
            ("canary-by-header-pattern", "^(beta|v2)$"),
        ]);
        assert!(complaints.is_empty(), "{complaints:?}");
        let canary = a.canary.unwrap();
        let with = |v: &'static str| {
            HeaderMap::from_iter([(HeaderName::from_static("x-canary"), HeaderValue::from_static(v))])
        };
        assert!(canary.takes(&with("beta"), 99));
        assert!(canary.takes(&with("v2"), 99));
        assert!(!canary.takes(&with("v3"), 99));
        // With a pattern, always is just another value.
        assert!(!canary.takes(&with("always"), 99));
        let (a, _) = parse(&[
            ("canary", "true"),
            ("canary-by-header", "x-canary"),
            ("canary-by-header-value", "exact"),
            ("canary-by-header-pattern", "beta"),
        ]);
        let canary = a.canary.unwrap();
        assert!(!canary.takes(&with("beta"), 99) && canary.takes(&with("exact"), 99));
        assert_eq!(
            parse(&[("canary-by-header-pattern", "(")]).1[0].reason,
            "InvalidAnnotation"
        );
    }

    #[test]
    fn affinity_limits_cors_auth_and_custom_errors_become_typed_settings() {
        let (a, complaints) = parse(&[
            ("affinity", "cookie"),
            ("affinity-mode", "persistent"),
            ("session-cookie-name", "route"),
            ("session-cookie-path", "/app"),
            ("session-cookie-samesite", "strict"),
            ("session-cookie-max-age", "172800"),
            ("session-cookie-secure", "true"),
            ("session-cookie-change-on-failure", "true"),
            ("limit-rps", "10"),
            ("limit-connections", "3"),
            ("limit-burst-multiplier", "2"),
            ("limit-whitelist", "10.0.0.0/8"),
            ("enable-cors", "true"),
            ("cors-allow-origin", "https://a.example, https://*.b.example"),
            ("cors-allow-methods", "GET,POST"),
            ("cors-expose-headers", "X-Total"),
            ("cors-allow-credentials", "false"),
            ("cors-max-age", "600"),
            ("auth-type", "basic"),
            ("auth-secret", "users"),
            ("auth-secret-type", "auth-map"),
            ("auth-realm", "Staff only"),
            ("custom-http-errors", "404, 503"),
            ("default-backend", "errors"),
            ("proxy-ssl-secret", "default/upstream-ca"),
            ("proxy-ssl-verify", "on"),
            ("proxy-ssl-name", "web.internal"),
            ("proxy-ssl-server-name", "on"),
        ]);
        assert!(complaints.is_empty(), "{complaints:?}");
        let affinity = a.affinity.unwrap();
        assert_eq!(affinity.mode, affinity::Mode::Persistent);
        assert_eq!(
            (affinity.name.as_str(), affinity.path.as_deref()),
            ("route", Some("/app"))
        );
        assert_eq!((affinity.samesite, affinity.max_age), (Some("Strict"), Some(172800)));
        assert!(affinity.secure && affinity.change_on_failure);
        assert_eq!(a.limits.rps, NonZeroU32::new(10));
        assert_eq!(a.limits.connections, NonZeroU32::new(3));
        assert_eq!(a.limits.burst_multiplier.get(), 2);
        assert_eq!(a.limits.whitelist, ["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        let cors = a.cors.unwrap();
        assert_eq!(
            cors.origins,
            Origins::List(vec!["https://a.example".into(), "https://*.b.example".into()])
        );
        assert_eq!(cors.methods, "GET, POST");
        assert_eq!(cors.expose.unwrap(), "X-Total");
        assert!(!cors.credentials);
        assert_eq!(cors.max_age, 600);
        assert_eq!(
            a.auth,
            Some(BasicAuth {
                secret: "users".into(),
                map: true,
                realm: "Staff only".into()
            })
        );
        assert_eq!(a.custom_errors, [404, 503]);
        assert_eq!(a.default_backend.as_deref(), Some("errors"));
        assert_eq!(
            a.proxy_ssl,
            ProxySsl {
                secret: Some("default/upstream-ca".into()),
                verify: true,
                name: Some("web.internal".into()),
                server_name: true,
                ..ProxySsl::default()
            }
        );
        // Off unless asked: the settings alone do nothing.
        let (a, _) = parse(&[
            ("session-cookie-name", "x"),
            ("cors-max-age", "1"),
            ("auth-secret", "s"),
        ]);
        assert_eq!((a.affinity, a.cors, a.auth), (None, None, None));
        assert!(!Annotations::default().limits.any());
    }

    #[test]
    fn bad_values_and_unsupported_authentication() {
        for (name, value) in [
            ("affinity", "ip"),
            ("affinity-mode", "sticky"),
            ("session-cookie-samesite", "Sometimes"),
            ("limit-rps", "-1"),
            ("limit-burst-multiplier", "0"),
            ("cors-allow-methods", "GET;x"),
            ("custom-http-errors", "200"),
            ("default-backend", "other/errors"),
            ("cors-allow-origin", "ftp://x"),
            ("proxy-ssl-verify", "true"),
        ] {
            let (_, complaints) = parse(&[(name, value)]);
            assert_eq!(complaints.len(), 1, "{name}: {value}");
            assert_eq!(complaints[0].reason, "InvalidAnnotation", "{name}: {value}");
        }
        // Digest authentication is refused, and the paths are closed (an empty Secret name) rather than open.
        let (a, complaints) = parse(&[("auth-type", "digest"), ("auth-secret", "s")]);
        assert_eq!(complaints.len(), 1);
        assert_eq!(a.auth.unwrap().secret, "");
    }
}
