//! RequestMirror: a copy of a request goes to each mirror backend (all, or the share its `percent` or
//! `fraction` says), its answer read and dropped; the client's request goes on without waiting for it. A copy
//! carries the request's body: requests whose body the proxy holds whole (none, or a Content-Length up to 64 KiB,
//! as for retries) are mirrored, those whose body streams through as it comes are not.

use crate::annotations::BackendProtocol;
use crate::backend::{self, UpstreamClient};
use crate::upstream::Upstream;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri, Version, header};
use http_body_util::{BodyExt, Empty, Full};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use weft_gateway::api::HTTPRequestMirrorFilter;

/// How long a mirrored request may take, connecting included: nothing waits for it, but none piles up.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Mirror {
    pub upstream: Arc<Upstream>,
    pub protocol: BackendProtocol,
    /// The verified TLS client of the Service's BackendTLSPolicy.
    tls: Option<Box<UpstreamClient>>,
    /// The share of requests mirrored: numerator, denominator (> 0).
    share: (u32, u32),
}

impl Mirror {
    pub fn new(
        filter: &HTTPRequestMirrorFilter,
        upstream: Arc<Upstream>,
        protocol: BackendProtocol,
        tls: Option<Box<UpstreamClient>>,
    ) -> Mirror {
        let share = match (&filter.fraction, filter.percent) {
            (Some(f), _) => (
                u32::try_from(f.numerator).unwrap_or(0),
                f.denominator.and_then(|d| u32::try_from(d).ok()).unwrap_or(100),
            ),
            (None, Some(p)) => (u32::try_from(p).unwrap_or(0), 100),
            (None, None) => (1, 1),
        };
        Mirror {
            upstream,
            protocol,
            tls,
            share: (share.0, share.1.max(1)),
        }
    }

    /// Whether this request is one of the share mirrored.
    pub fn chosen(&self) -> bool {
        let (numerator, denominator) = self.share;
        numerator >= denominator || crate::proxy::roll(denominator) < numerator
    }

    /// Sends a copy of the request (`method`, `headers`, the upstream's `path` and the `body`) to the next
    /// endpoint, in the background.
    pub fn send(&self, method: &Method, headers: &HeaderMap, path: &str, body: &Bytes) {
        let Some(endpoint) = self.upstream.attempts().next() else {
            return;
        };
        let scheme = backend::scheme(self.protocol);
        let Ok(uri) = Uri::try_from(format!("{scheme}://{endpoint}{path}")) else {
            return;
        };
        let body = match body.is_empty() {
            true => Empty::new().map_err(|e| match e {}).boxed_unsync(),
            false => Full::new(body.clone()).map_err(|e| match e {}).boxed_unsync(),
        };
        let mut request = Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers.clone();
        // What describes the client's connection is not the copy's (an upgrade is not mirrored as one).
        for name in [
            header::CONNECTION,
            header::UPGRADE,
            header::TE,
            header::TRANSFER_ENCODING,
        ] {
            request.headers_mut().remove(name);
        }
        request.headers_mut().remove("keep-alive");
        *request.version_mut() = if self.protocol.http2() {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let client = self.tls.as_deref().cloned().unwrap_or_else(|| client(self.protocol));
        let service = self.upstream.service.clone();
        tokio::spawn(async move {
            let sent = async {
                let response = client.request(request).await?;
                // Read to the end, so the connection goes back to the pool.
                response.into_body().collect().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            };
            match tokio::time::timeout(MIRROR_TIMEOUT, sent).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%service, error = %e, "mirrored request failed"),
                Err(_) => tracing::debug!(%service, "mirrored request timed out"),
            }
        });
    }
}

/// The clients of mirrored requests, one per protocol, made once (their pools apart from the proxy's).
fn client(protocol: BackendProtocol) -> UpstreamClient {
    static CLIENTS: OnceLock<Mutex<HashMap<BackendProtocol, UpstreamClient>>> = OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    clients
        .entry(protocol)
        .or_insert_with(|| backend::client(protocol, CONNECT_TIMEOUT))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_gateway::api::Fraction;

    fn mirror(percent: Option<i32>, fraction: Option<(i32, Option<i32>)>) -> Mirror {
        let filter = HTTPRequestMirrorFilter {
            percent,
            fraction: fraction.map(|(numerator, denominator)| Fraction { numerator, denominator }),
            ..Default::default()
        };
        Mirror::new(
            &filter,
            Arc::new(Upstream::new(String::new(), Vec::new())),
            BackendProtocol::Http,
            None,
        )
    }

    fn share(m: &Mirror) -> usize {
        (0..2000).filter(|_| m.chosen()).count()
    }

    #[test]
    fn percent_and_fraction_choose_their_share() {
        assert_eq!(share(&mirror(None, None)), 2000);
        assert_eq!(share(&mirror(Some(100), None)), 2000);
        assert_eq!(share(&mirror(Some(0), None)), 0);
        assert_eq!(share(&mirror(None, Some((0, None)))), 0);
        let half = share(&mirror(Some(50), None));
        assert!((800..1200).contains(&half), "{half} of 2000 at 50%");
        let tenth = share(&mirror(None, Some((1, Some(10)))));
        assert!((100..300).contains(&tenth), "{tenth} of 2000 at 1/10");
    }
}
