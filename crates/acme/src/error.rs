//! What can go wrong while talking to an ACME server, in the terms cert-manager reports it with.

/// A failed ACME operation. [`Error::reason`] is the reason cert-manager gives for it on an Issuer, Order or
/// Challenge; [`Error::is_retryable`] tells a controller whether to try again with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached: refused, timed out, TLS handshake or certificate rejected.
    #[error("ACME server {url} unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    /// The server answered with a problem document (RFC 8555 §6.7), e.g. `urn:ietf:params:acme:error:malformed`.
    #[error("ACME server error: {kind}: {detail}")]
    Server {
        kind: String,
        detail: String,
        status: Option<u16>,
    },
    /// The server could not validate an identifier's challenge: the order is invalid.
    #[error("challenge for {identifier} failed: {detail}")]
    ChallengeFailed { identifier: String, detail: String },
    /// The order became invalid for a reason other than a challenge (e.g. finalisation refused).
    #[error("order {url} is invalid: {detail}")]
    OrderInvalid { url: String, detail: String },
    /// The order did not reach the wanted state before the back-off policy's deadline.
    #[error("order {url} still {state} after {waited:?}")]
    Timeout {
        url: String,
        state: String,
        waited: std::time::Duration,
    },
    /// The server offers no challenge this client can solve (only HTTP-01 is supported).
    #[error("no HTTP-01 challenge offered for {identifier}")]
    NoHttp01 { identifier: String },
    /// Bad configuration: a malformed directory URL, CA bundle, account key, EAB key or CSR.
    #[error("invalid {what}: {detail}")]
    InvalidConfig { what: &'static str, detail: String },
    /// The caller's HTTP-01 solver could not present or clean up a key authorization.
    #[error("HTTP-01 solver for {identifier}: {source}")]
    Solver {
        identifier: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Anything else instant-acme reports (malformed responses, crypto failures).
    #[error("ACME client: {0}")]
    Client(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// cert-manager's reason for this failure where the ACME account is set up (an Issuer's Ready=False).
    pub fn issuer_reason(&self) -> &'static str {
        match self {
            Error::InvalidConfig { .. } => "InvalidConfig",
            _ => "ErrRegisterACMEAccount",
        }
    }

    /// The reason of a CertificateRequest's Ready=False while its order is worked on: "Pending" while trying
    /// again can help, "Failed" once the order cannot succeed (cert-manager then creates a new request after
    /// its back-off).
    pub fn request_reason(&self) -> &'static str {
        if self.is_retryable() { "Pending" } else { "Failed" }
    }

    /// The state an Order or Challenge object ends in for this failure (cert-manager's `status.state`): "invalid"
    /// when the server failed the order, "errored" when it cannot go on for another reason; None while it is
    /// retried.
    pub fn order_state(&self) -> Option<&'static str> {
        match self {
            Error::ChallengeFailed { .. } | Error::OrderInvalid { .. } => Some("invalid"),
            _ if self.is_retryable() => None,
            _ => Some("errored"),
        }
    }

    /// Whether trying again later can succeed. A failed challenge or invalid order needs a new order (cert-manager
    /// then creates a new CertificateRequest after its back-off); bad configuration needs a change of spec.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Timeout { .. } | Error::Solver { .. } | Error::Client(_) => true,
            Error::Server { status, kind, .. } => {
                status.is_none_or(|s| s >= 500 || s == 429) || kind.ends_with(":rateLimited")
            }
            Error::ChallengeFailed { .. }
            | Error::OrderInvalid { .. }
            | Error::NoHttp01 { .. }
            | Error::InvalidConfig { .. } => false,
        }
    }
}

/// The marker the HTTP client puts inside instant-acme's errors so that a connection failure can be told from
/// the server's own answers.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub(crate) struct Transport {
    pub(crate) url: String,
    pub(crate) detail: String,
}

impl From<instant_acme::Error> for Error {
    fn from(e: instant_acme::Error) -> Self {
        match e {
            instant_acme::Error::Api(problem) => Error::Server {
                kind: problem.r#type.clone().unwrap_or_else(|| "about:blank".into()),
                detail: problem.detail.clone().unwrap_or_default(),
                status: problem.status,
            },
            instant_acme::Error::Other(inner) => match inner.downcast::<Transport>() {
                Ok(t) => Error::Unreachable {
                    url: t.url,
                    detail: t.detail,
                },
                Err(other) => Error::Client(other.to_string()),
            },
            instant_acme::Error::InvalidUri(e) => Error::InvalidConfig {
                what: "ACME server URL",
                detail: e.to_string(),
            },
            instant_acme::Error::KeyRejected => Error::InvalidConfig {
                what: "account key",
                detail: "not an ECDSA P-256 PKCS#8 key".into(),
            },
            other => Error::Client(other.to_string()),
        }
    }
}
