//! HTTPRoute retries (GEP-1731, a rule's `retry`): a request whose backend answers one of `codes`, or to which no
//! connection could be made, is sent again, at most `attempts` more times, each to the next endpoint of the same
//! backend, after a backoff that doubles from `backoff` up to ten times it. Only a request whose body the proxy
//! holds whole can be sent again (see `proxy::forward`). A try that reaches `timeouts.backendRequest` is retried
//! too; `timeouts.request` bounds them all.

use std::time::Duration;
use weft_gateway::api::HTTPRouteRetry;

/// Retries when `attempts` is not given (Envoy's `num_retries` default).
const DEFAULT_ATTEMPTS: u32 = 1;
/// The first backoff when `backoff` is not given (Envoy's base interval).
const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);
/// The most a backoff grows to, as a multiple of the first (Envoy's cap).
const BACKOFF_CAP: u32 = 10;

#[derive(Clone, Debug, PartialEq)]
pub struct Retry {
    /// Response codes that are retried (400-599).
    codes: Vec<u16>,
    /// Retries after the first try.
    pub attempts: u32,
    backoff: Duration,
}

impl Retry {
    /// A rule's retry policy; none when it retries nothing (`attempts: 0`), or `backoff` is not a GEP-2257
    /// Duration.
    pub fn compile(spec: &HTTPRouteRetry) -> Option<Retry> {
        let attempts = match spec.attempts {
            Some(n) => u32::try_from(n).ok().filter(|n| *n > 0)?,
            None => DEFAULT_ATTEMPTS,
        };
        let backoff = match spec.backoff.as_deref() {
            Some(text) => weft_gateway::duration::parse(text)?,
            None => DEFAULT_BACKOFF,
        };
        let codes = spec
            .codes
            .iter()
            .filter_map(|c| u16::try_from(*c).ok())
            .filter(|c| (400..=599).contains(c))
            .collect();
        Some(Retry {
            codes,
            attempts,
            backoff,
        })
    }

    /// Whether a response with `status` is tried again.
    pub fn on(&self, status: http::StatusCode) -> bool {
        self.codes.contains(&status.as_u16())
    }

    /// The wait before retry `n` (1 for the first).
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(4);
        self.backoff * factor.min(BACKOFF_CAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(codes: &[i32], attempts: Option<i32>, backoff: Option<&str>) -> HTTPRouteRetry {
        HTTPRouteRetry {
            codes: codes.to_vec(),
            attempts,
            backoff: backoff.map(str::to_string),
        }
    }

    #[test]
    fn codes_attempts_and_backoff() {
        let retry = Retry::compile(&spec(&[500, 503, 200, 600], Some(2), Some("100ms"))).unwrap();
        assert!(retry.on(http::StatusCode::INTERNAL_SERVER_ERROR));
        assert!(retry.on(http::StatusCode::SERVICE_UNAVAILABLE));
        assert!(!retry.on(http::StatusCode::BAD_GATEWAY));
        assert!(!retry.on(http::StatusCode::OK), "outside 400-599: ignored");
        assert_eq!(retry.attempts, 2);
        let waits: Vec<u128> = (1..=6).map(|n| retry.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn defaults_and_what_turns_retries_off() {
        let retry = Retry::compile(&spec(&[502], None, None)).unwrap();
        assert_eq!((retry.attempts, retry.backoff(1)), (1, DEFAULT_BACKOFF));
        assert_eq!(Retry::compile(&spec(&[502], Some(0), None)), None);
        assert_eq!(Retry::compile(&spec(&[502], Some(-1), None)), None);
        assert_eq!(Retry::compile(&spec(&[502], Some(1), Some("1.5s"))), None);
    }
}
