//! An order for a CSR's identifiers, each authorized by HTTP-01 through the caller's [`Http01Solver`], then
//! finalized with the CSR; the certificate chain comes back as PEM.

use crate::account::Account;
use crate::csr;
use crate::error::{Error, Result};
use instant_acme::{AuthorizationStatus, ChallengeType, NewOrder, Order, OrderStatus, RetryPolicy};
use std::future::Future;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves HTTP-01 key authorizations: the ACME server fetches
/// `http://IDENTIFIER/.well-known/acme-challenge/TOKEN` and expects `key_authorization` as the body.
/// cert-manager does it with a solver pod behind an Ingress; a test with a local HTTP server.
pub trait Http01Solver: Sync {
    /// Starts serving `key_authorization` at the token's path for `identifier`. The server validates once this
    /// returns, so it must be reachable by then (cert-manager self-checks first; a solver may wait here).
    fn present(
        &self,
        identifier: &str,
        token: &str,
        key_authorization: &str,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
    /// Stops serving the token (after the order is ready or has failed).
    fn clean_up(&self, identifier: &str, token: &str) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// How often to poll the order while the server validates and issues: from `initial`, multiplied by `factor`
/// each time, for at most `timeout` per wait (instant-acme's `RetryPolicy`, honouring `Retry-After`).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub factor: f32,
    pub timeout: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            factor: 2.0,
            timeout: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    fn policy(&self) -> RetryPolicy {
        RetryPolicy::new()
            .initial_delay(self.initial)
            .backoff(self.factor)
            .timeout(self.timeout)
    }
}

/// What an order gave: the certificate chain (leaf first) as PEM, and the order's URL (an Order's `status.url`).
#[derive(Debug, Clone)]
pub struct Issued {
    pub chain_pem: String,
    pub order_url: String,
}

/// A presented token, to be cleaned up whatever the outcome.
struct Presented {
    identifier: String,
    token: String,
}

/// Orders a certificate for the identifiers of `csr_der` (its DNS and IP subject alternative names, else its
/// common name), solves every pending authorization by HTTP-01, finalizes with the CSR and waits for the chain.
/// Tokens presented are cleaned up before this returns, whether it succeeds or not.
pub async fn issue(account: &Account, csr_der: &[u8], solver: &impl Http01Solver, backoff: &Backoff) -> Result<Issued> {
    let identifiers = csr::identifiers(csr_der)?;
    let mut order = account.inner.new_order(&NewOrder::new(&identifiers)).await?;
    let order_url = order.url().to_string();
    let mut presented = Vec::new();
    let outcome = authorize(&mut order, solver, &mut presented).await;
    let outcome = match outcome {
        Ok(()) => finish(&mut order, csr_der, backoff).await,
        Err(e) => Err(e),
    };
    for p in presented {
        // A token left behind is harmless to the order; the outcome is what the caller needs.
        if let Err(e) = solver.clean_up(&p.identifier, &p.token).await
            && outcome.is_ok()
        {
            return Err(Error::Solver {
                identifier: p.identifier,
                source: e,
            });
        }
    }
    outcome.map(|chain_pem| Issued { chain_pem, order_url })
}

/// Presents the key authorization of every pending authorization and tells the server it may validate.
async fn authorize(order: &mut Order, solver: &impl Http01Solver, presented: &mut Vec<Presented>) -> Result<()> {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        let identifier = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Pending => {}
            // Authorized already (by an earlier order of this account).
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(Error::OrderInvalid {
                    url: authorization.url().to_string(),
                    detail: format!("authorization for {identifier} is {other:?}"),
                });
            }
        }
        let mut challenge = authorization
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| Error::NoHttp01 {
                identifier: identifier.clone(),
            })?;
        let token = challenge.token.clone();
        solver
            .present(&identifier, &token, challenge.key_authorization().as_str())
            .await
            .map_err(|source| Error::Solver {
                identifier: identifier.clone(),
                source,
            })?;
        presented.push(Presented { identifier, token });
        challenge.set_ready().await?;
    }
    Ok(())
}

/// Waits for the order to be ready, finalizes it with the CSR and waits for the certificate.
async fn finish(order: &mut Order, csr_der: &[u8], backoff: &Backoff) -> Result<String> {
    let started = std::time::Instant::now();
    let policy = backoff.policy();
    let ready = order.poll_ready(&policy).await;
    if !matches!(ready, Ok(OrderStatus::Ready)) {
        // The authorizations say which identifier failed and why, better than the order's own problem.
        if let Some(failed) = failed_challenge(order).await? {
            return Err(failed);
        }
    }
    match ready {
        Ok(OrderStatus::Ready) => {}
        Ok(status) => {
            return Err(Error::OrderInvalid {
                url: order.url().to_string(),
                detail: format!("order is {status:?}"),
            });
        }
        Err(instant_acme::Error::Timeout(_)) => {
            return Err(Error::Timeout {
                url: order.url().to_string(),
                state: format!("{:?}", order.state().status).to_lowercase(),
                waited: started.elapsed(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    order.finalize_csr(csr_der).await?;
    match order.poll_certificate(&policy).await {
        Ok(chain) => Ok(chain),
        Err(instant_acme::Error::Timeout(_)) => Err(Error::Timeout {
            url: order.url().to_string(),
            state: "processing".into(),
            waited: started.elapsed(),
        }),
        Err(instant_acme::Error::Api(problem)) => Err(Error::OrderInvalid {
            url: order.url().to_string(),
            detail: problem.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The first invalid authorization's HTTP-01 error, fetched fresh from the server.
async fn failed_challenge(order: &mut Order) -> Result<Option<Error>> {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        let state = authorization.refresh().await?;
        if state.status != AuthorizationStatus::Invalid {
            continue;
        }
        let identifier = state.identifier().to_string();
        let detail = state
            .challenges
            .iter()
            .filter(|c| c.r#type == ChallengeType::Http01)
            .find_map(|c| c.error.as_ref())
            .map_or_else(|| "authorization invalid".to_string(), ToString::to_string);
        return Ok(Some(Error::ChallengeFailed { identifier, detail }));
    }
    Ok(None)
}
