//! `weft acme-solver`: what an HTTP-01 solver pod runs (cert-manager's acmesolver): answers
//! `GET /.well-known/acme-challenge/TOKEN` for its domain with the key authorization, 404 otherwise.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

/// The one token a solver serves.
#[derive(Clone, Debug)]
pub struct Challenge {
    pub domain: String,
    pub token: String,
    pub key: String,
}

impl Challenge {
    /// The response to a request for `path` with `host` (port and case ignored, as the ACME server may send either).
    pub fn answer(&self, host: Option<&str>, path: &str) -> Option<&str> {
        let host = host.map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_ascii_lowercase());
        let ours = host.is_none_or(|h| h == self.domain.to_ascii_lowercase());
        let token = path.strip_prefix("/.well-known/acme-challenge/")?;
        (ours && token == self.token).then_some(self.key.as_str())
    }
}

/// Serves `challenge` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, challenge: Challenge) -> std::io::Result<()> {
    let challenge = Arc::new(challenge);
    loop {
        let (stream, _) = listener.accept().await?;
        let challenge = challenge.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let host = request.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok());
                let body = challenge.answer(host, request.uri().path()).map(str::to_string);
                async move {
                    let status = if body.is_some() { 200 } else { 404 };
                    hyper::Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::from(body.unwrap_or_default())))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_token_for_its_domain() {
        let c = Challenge {
            domain: "blue.weft.test".into(),
            token: "tok".into(),
            key: "tok.thumb".into(),
        };
        assert_eq!(
            c.answer(Some("blue.weft.test"), "/.well-known/acme-challenge/tok"),
            Some("tok.thumb")
        );
        assert_eq!(
            c.answer(Some("Blue.weft.test:80"), "/.well-known/acme-challenge/tok"),
            Some("tok.thumb")
        );
        assert_eq!(
            c.answer(Some("green.weft.test"), "/.well-known/acme-challenge/tok"),
            None
        );
        assert_eq!(
            c.answer(Some("blue.weft.test"), "/.well-known/acme-challenge/other"),
            None
        );
        assert_eq!(c.answer(None, "/"), None);
    }
}
