//! A CertificateRequest's Order (named after the request, owned by it): created with the request's CSR and names,
//! then worked on by one background task per Order, which runs the ACME order (weft-acme) and records its state
//! and certificate in the Order's status. The request reads the outcome from there, as cert-manager's does.

use super::{account, http01};
use crate::api::{ACMEIssuer, CertificateRequest, Order, OrderSpec, OrderStatus};
use crate::controller::{Options, events};
use crate::issuer::{Outcome, Resolved};
use base64::Engine;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

/// The Orders a task works on now (namespace/name).
static WORKING: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Retries of an order that failed for a reason that may pass (the server unreachable, the solver not served yet).
const ATTEMPTS: u32 = 4;

pub async fn sign(
    client: &Client,
    options: &Options,
    issuer: &Resolved,
    acme: &ACMEIssuer,
    request: &CertificateRequest,
) -> Result<Outcome, kube::Error> {
    let namespace = request.namespace().unwrap_or_default();
    let name = request.name_any();
    let orders: Api<Order> = Api::namespaced(client.clone(), &namespace);
    let (order, created) = match orders.get_opt(&name).await? {
        Some(order) => (order, false),
        None => (orders.create(&PostParams::default(), &new_order(request)).await?, true),
    };
    let status = order.status.clone().unwrap_or_default();
    let state = status.state.clone().unwrap_or_default();
    match state.as_str() {
        "valid" => {
            let chain = status
                .certificate
                .as_deref()
                .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
                .and_then(|c| String::from_utf8(c).ok());
            return Ok(match chain {
                Some(certificate) => Outcome::Issued { certificate, ca: None },
                None => Outcome::Failed(format!("Order {name:?} is valid but has no certificate")),
            });
        }
        "invalid" | "errored" => {
            let reason = status.reason.unwrap_or_default();
            return Ok(Outcome::Failed(format!(
                "Failed to wait for order resource {name:?} to become ready: order is in {state:?} state: {reason}"
            )));
        }
        _ => {}
    }
    let key = format!("{namespace}/{name}");
    let start = WORKING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_default()
        .insert(key.clone());
    if start {
        let work = Work {
            client: client.clone(),
            issuer: issuer.clone(),
            acme: acme.clone(),
            order,
            solver_image: options.acme_solver_image.clone(),
        };
        tokio::spawn(async move {
            work.run().await;
            WORKING
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_default()
                .remove(&key);
        });
    }
    Ok(match created {
        true => Outcome::Pending {
            reason: "OrderCreated",
            message: format!("Created Order resource {namespace}/{name}"),
        },
        false => Outcome::Pending {
            reason: "OrderPending",
            message: format!(
                "Waiting on certificate issuance from order {namespace}/{name}: {:?}",
                if state.is_empty() { "pending" } else { state.as_str() }
            ),
        },
    })
}

fn new_order(request: &CertificateRequest) -> Order {
    let (dns_names, ip_addresses, common_name) = names(request);
    let mut order = Order::new(
        &request.name_any(),
        OrderSpec {
            request: request.spec.request.clone(),
            issuer_ref: request.spec.issuer_ref.clone(),
            common_name,
            dns_names,
            ip_addresses,
            duration: request.spec.duration.clone(),
            profile: None,
        },
    );
    order.metadata.namespace = request.namespace();
    order.metadata.owner_references = request.controller_owner_ref(&()).map(|o| vec![o]);
    // The request's labels (the Certificate's) are what solvers' `matchLabels` select on; its solver overrides
    // (ingress-shim's edit-in-place) are read from the Order, as in cert-manager.
    order.metadata.labels = request.metadata.labels.clone();
    let overrides: std::collections::BTreeMap<String, String> = request
        .annotations()
        .iter()
        .filter(|(k, _)| k.starts_with(crate::annotations::HTTP01_OVERRIDE_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    order.metadata.annotations = (!overrides.is_empty()).then_some(overrides);
    order
}

/// The CSR's names, for the Order's spec (the ACME order itself is made from the CSR).
fn names(request: &CertificateRequest) -> (Vec<String>, Vec<String>, Option<String>) {
    let der = crate::issuer::csr(request)
        .ok()
        .and_then(|pem| ::pem::parse(pem).ok())
        .map(|p| p.into_contents());
    let identifiers = der.and_then(|d| weft_acme::identifiers(&d).ok()).unwrap_or_default();
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for identifier in identifiers {
        match identifier {
            weft_acme::Identifier::Dns(name) => dns.push(name),
            weft_acme::Identifier::Ip(ip) => ips.push(ip.to_string()),
            _ => {}
        }
    }
    (dns, ips, None)
}

/// One Order's ACME work.
struct Work {
    client: Client,
    issuer: Resolved,
    acme: ACMEIssuer,
    order: Order,
    solver_image: String,
}

impl Work {
    async fn run(self) {
        if let Err(reason) = self.solvers() {
            // No attempt can succeed until the issuer changes (cert-manager leaves such an Order pending with this
            // event; weft fails it, so that the Certificate says why and retries with its back-off).
            events::publish(&self.client, &self.order, events::WARNING, "Solver", &reason).await;
            let status = OrderStatus {
                state: Some("errored".into()),
                reason: Some(reason),
                failure_time: Some(crate::controller::now()),
                ..Default::default()
            };
            self.patch(status).await;
            return;
        }
        let mut delay = Duration::from_secs(2);
        for attempt in 1..=ATTEMPTS {
            self.patch(OrderStatus {
                state: Some("pending".into()),
                ..Default::default()
            })
            .await;
            match self.attempt().await {
                Ok((url, chain)) => {
                    let certificate = base64::engine::general_purpose::STANDARD.encode(chain);
                    let status = OrderStatus {
                        url: Some(url),
                        state: Some("valid".into()),
                        certificate: Some(certificate),
                        ..Default::default()
                    };
                    self.patch(status).await;
                    let message = "Order completed successfully";
                    events::publish(&self.client, &self.order, events::NORMAL, "Complete", message).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(order = %self.order.name_any(), attempt, error = %e, "ACME order failed");
                    let final_state = e.order_state().or((attempt == ATTEMPTS).then_some("errored"));
                    let status = OrderStatus {
                        state: Some(final_state.unwrap_or("pending").into()),
                        reason: Some(e.to_string()),
                        failure_time: final_state.map(|_| crate::controller::now()),
                        ..Default::default()
                    };
                    self.patch(status).await;
                    if final_state.is_some() {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }

    /// Whether every name of the Order has a solver; cert-manager's message when one has none.
    fn solvers(&self) -> Result<(), String> {
        let solver = http01::Solver::new(&self.client, &self.order, &self.acme, &self.solver_image);
        let spec = &self.order.spec;
        for identifier in spec.dns_names.iter().chain(&spec.ip_addresses) {
            solver.solver_for(identifier).map_err(|e| {
                format!("Failed to determine a valid solver configuration for the set of domains on the Order: {e}")
            })?;
        }
        Ok(())
    }

    async fn attempt(&self) -> Result<(String, String), weft_acme::Error> {
        let account = match account::ensure(&self.client, &self.issuer, &self.acme).await {
            Ok(account) => account,
            Err(account::Failure::Acme(e)) => return Err(e),
            Err(account::Failure::Config(detail)) => {
                return Err(weft_acme::Error::InvalidConfig { what: "issuer", detail });
            }
            Err(account::Failure::Kube(e)) => return Err(weft_acme::Error::Client(e.to_string())),
        };
        let invalid = |detail: String| weft_acme::Error::InvalidConfig { what: "CSR", detail };
        let pem = base64::engine::general_purpose::STANDARD
            .decode(self.order.spec.request.trim())
            .map_err(|e| invalid(e.to_string()))?;
        let csr = ::pem::parse(&pem).map_err(|e| invalid(e.to_string()))?;
        let solver = http01::Solver::new(&self.client, &self.order, &self.acme, &self.solver_image);
        let backoff = weft_acme::Backoff {
            timeout: Duration::from_secs(90),
            ..Default::default()
        };
        let outcome = weft_acme::issue(&account, csr.contents(), &solver, &backoff).await;
        solver.finish(outcome.as_ref().err()).await;
        outcome.map(|issued| (issued.order_url, issued.chain_pem))
    }

    /// Writes the Order's status (the request is requeued by its own controller and reads it).
    async fn patch(&self, status: OrderStatus) {
        let api: Api<Order> = Api::namespaced(self.client.clone(), &self.order.namespace().unwrap_or_default());
        let mut status = serde_json::to_value(&status).unwrap_or_default();
        // A merge patch keeps absent fields: an earlier attempt's reason goes when this one has none.
        if let Some(fields) = status.as_object_mut() {
            for field in ["reason", "failureTime"] {
                fields.entry(field).or_insert(serde_json::Value::Null);
            }
        }
        let patch = Patch::Merge(serde_json::json!({ "status": status }));
        if let Err(e) = api
            .patch_status(&self.order.name_any(), &PatchParams::default(), &patch)
            .await
        {
            tracing::warn!(order = %self.order.name_any(), error = %e, "writing the Order's status");
        }
    }
}
