//! HTTP-01 solved as cert-manager solves it: per token a Challenge object (its `key` the key authorization, its
//! `solver` the one `select` picked for the name), a solver Pod serving it (`weft acme-solver`, weft's image, as
//! cert-manager's acmesolver), a Service on port 8089, and the Exact path `/.well-known/acme-challenge/TOKEN` for
//! the challenge's host to that Service: in an Ingress of its own for the controller the solver names
//! (`ingressClassName`, or the `kubernetes.io/ingress.class` annotation from `class`), or added to the existing
//! Ingress `name` (`edit`). Before the server is told to validate, the path is checked through that Ingress's
//! address (cert-manager's self-check). Pod, Service and Ingress (or the added path) go once the order is done;
//! the Challenges stay only when they failed. Events on the Order and Challenges say so, in cert-manager's words.

use super::{edit, select};
use crate::api::{
    ACMEChallengeSolver, ACMEChallengeSolverHTTP01Ingress, ACMEIssuer, Challenge, ChallengeSpec, ChallengeStatus, Order,
};
use crate::controller::events;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use std::time::{Duration, Instant};
use weft_model::k8s_openapi;

/// The port solver pods serve on (cert-manager's).
pub const SOLVER_PORT: u16 = 8089;
/// How long the self-check waits for the Ingress to serve the key authorization.
const SELF_CHECK: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Solver {
    client: Client,
    order: Order,
    acme: ACMEIssuer,
    image: String,
}

impl Solver {
    pub fn new(client: &Client, order: &Order, acme: &ACMEIssuer, image: &str) -> Self {
        Solver {
            client: client.clone(),
            order: order.clone(),
            acme: acme.clone(),
            image: image.to_string(),
        }
    }

    fn namespace(&self) -> String {
        self.order.namespace().unwrap_or_default()
    }

    /// A Challenge's name: the Order's and a hash of the token, as cert-manager's `<order>-<hash>`.
    fn name(&self, token: &str) -> String {
        format!("{}-{}", self.order.name_any(), short_hash(token))
    }

    /// The solver's objects of a token (cert-manager's generateName prefix, made stable per token here).
    fn solver_name(token: &str) -> String {
        format!("cm-acme-http-solver-{}", short_hash(token))
    }

    /// The issuer's solver for `identifier` (by the selectors, for the Order's labels), with the Order's override
    /// annotations applied.
    pub fn solver_for(&self, identifier: &str) -> Result<ACMEChallengeSolver, String> {
        let labels = self.order.labels();
        let solver = select::pick(&self.acme.solvers, identifier, labels)
            .ok_or_else(|| "no configured challenge solvers can be used for this challenge".to_string())?;
        select::with_overrides(solver.clone(), self.order.annotations())
    }

    /// The solver's Ingress settings for `identifier`.
    fn ingress_settings(&self, identifier: &str) -> ACMEChallengeSolverHTTP01Ingress {
        self.solver_for(identifier)
            .ok()
            .and_then(|s| s.http01?.ingress)
            .unwrap_or_default()
    }

    /// The Ingress that serves the token's path: the existing one the solver edits, or the solver's own.
    fn ingress_name(&self, identifier: &str, token: &str) -> String {
        self.ingress_settings(identifier)
            .name
            .unwrap_or_else(|| Self::solver_name(token))
    }

    /// Records the outcome on the Challenges: deleted once the order succeeded, `invalid` with the server's
    /// reason for the one that failed, `errored` for the others.
    pub async fn finish(&self, error: Option<&weft_acme::Error>) {
        let api: Api<Challenge> = Api::namespaced(self.client.clone(), &self.namespace());
        let selector = format!("acme.cert-manager.io/order-name={}", self.order.name_any());
        let Ok(challenges) = api.list(&kube::api::ListParams::default().labels(&selector)).await else {
            return;
        };
        for challenge in challenges {
            let Some(error) = error else {
                let message = format!(
                    "Domain {:?} verified with \"HTTP-01\" validation",
                    challenge.spec.dns_name
                );
                events::publish(&self.client, &challenge, events::NORMAL, "DomainVerified", &message).await;
                let _ = api.delete(&challenge.name_any(), &DeleteParams::default()).await;
                continue;
            };
            let (state, reason) = match error {
                weft_acme::Error::ChallengeFailed { identifier, detail } if *identifier == challenge.spec.dns_name => {
                    let message = format!("Accepting challenge authorization failed: {detail}");
                    events::publish(&self.client, &challenge, events::WARNING, "Failed", &message).await;
                    ("invalid", detail.clone())
                }
                other => ("errored", other.to_string()),
            };
            let status = ChallengeStatus {
                processing: Some(false),
                presented: Some(false),
                reason: Some(reason),
                state: Some(state.into()),
            };
            let patch = Patch::Merge(serde_json::json!({ "status": status }));
            let _ = api
                .patch_status(&challenge.name_any(), &PatchParams::default(), &patch)
                .await;
        }
    }

    /// The Challenge of a token, pending and presented; an Event on the Order and on the Challenge.
    async fn create_challenge(
        &self,
        identifier: &str,
        token: &str,
        key: &str,
        solver: ACMEChallengeSolver,
    ) -> Result<Challenge, kube::Error> {
        let api: Api<Challenge> = Api::namespaced(self.client.clone(), &self.namespace());
        let mut challenge = Challenge::new(
            &self.name(token),
            ChallengeSpec {
                url: String::new(),
                authorization_url: String::new(),
                dns_name: identifier.to_string(),
                wildcard: None,
                type_: "HTTP-01".into(),
                token: token.to_string(),
                key: key.to_string(),
                solver,
                issuer_ref: self.order.spec.issuer_ref.clone(),
            },
        );
        challenge.metadata.namespace = Some(self.namespace());
        challenge.metadata.labels =
            Some([("acme.cert-manager.io/order-name".to_string(), self.order.name_any())].into());
        challenge.metadata.owner_references = self.order.controller_owner_ref(&()).map(|o| vec![o]);
        let name = self.name(token);
        match api.create(&PostParams::default(), &challenge).await {
            Ok(_) => {
                let message = format!("Created Challenge resource {name:?} for domain {identifier:?}");
                events::publish(&self.client, &self.order, events::NORMAL, "Created", &message).await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
        let status = ChallengeStatus {
            processing: Some(true),
            presented: Some(true),
            reason: None,
            state: Some("pending".into()),
        };
        let patch = Patch::Merge(serde_json::json!({ "status": status }));
        let challenge = api.patch_status(&name, &PatchParams::default(), &patch).await?;
        let message = "Challenge scheduled for processing";
        events::publish(&self.client, &challenge, events::NORMAL, "Started", message).await;
        Ok(challenge)
    }

    async fn create_solver(&self, identifier: &str, token: &str, key: &str) -> Result<(), kube::Error> {
        let namespace = self.namespace();
        let name = Self::solver_name(token);
        let labels = serde_json::json!({
            "acme.cert-manager.io/http01-solver": "true",
            "acme.cert-manager.io/http-domain": short_hash(identifier),
            "acme.cert-manager.io/http-token": short_hash(token),
        });
        let owner = self.order.controller_owner_ref(&()).map(|o| vec![o]);
        let meta =
            serde_json::json!({"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owner});
        let pod: Pod = from_json(serde_json::json!({
            "metadata": meta,
            "spec": {
                "restartPolicy": "OnFailure",
                "containers": [{
                    "name": "acmesolver",
                    "image": self.image,
                    "command": ["weft", "acme-solver", format!("--listen-port={SOLVER_PORT}"),
                                format!("--domain={identifier}"), format!("--token={token}"), format!("--key={key}")],
                    "ports": [{"name": "http", "containerPort": SOLVER_PORT}],
                }],
            },
        }))?;
        let service: Service = from_json(serde_json::json!({
            "metadata": meta,
            "spec": {"selector": labels, "ports": [{"name": "http", "port": SOLVER_PORT, "targetPort": SOLVER_PORT}]},
        }))?;
        let settings = self.ingress_settings(identifier);
        let post = PostParams::default();
        ignore_exists(
            Api::<Pod>::namespaced(self.client.clone(), &namespace)
                .create(&post, &pod)
                .await,
        )?;
        ignore_exists(
            Api::<Service>::namespaced(self.client.clone(), &namespace)
                .create(&post, &service)
                .await,
        )?;
        let ingresses = Api::<Ingress>::namespaced(self.client.clone(), &namespace);
        match &settings.name {
            Some(existing) => {
                let path = edit::challenge_path(token, &Self::solver_name(token), SOLVER_PORT);
                edit::add_path(&ingresses, existing, identifier, path).await
            }
            None => {
                let ingress = Self::ingress(&settings, &meta, identifier, token)?;
                ignore_exists(ingresses.create(&post, &ingress).await)
            }
        }
    }

    /// The solver's own Ingress: one rule for the challenge's host, the token's Exact path to the solver Service.
    fn ingress(
        settings: &ACMEChallengeSolverHTTP01Ingress,
        meta: &serde_json::Value,
        identifier: &str,
        token: &str,
    ) -> Result<Ingress, kube::Error> {
        let mut meta = meta.clone();
        if let Some(class) = &settings.class {
            meta["annotations"] = serde_json::json!({"kubernetes.io/ingress.class": class});
        }
        let path = edit::challenge_path(token, &Self::solver_name(token), SOLVER_PORT);
        let mut spec = serde_json::json!({"rules": [{"host": identifier, "http": {"paths": [path]}}]});
        if let Some(class) = &settings.ingress_class_name {
            spec["ingressClassName"] = class.clone().into();
        }
        from_json(serde_json::json!({"metadata": meta, "spec": spec}))
    }

    /// cert-manager's self-check: the key authorization is served for the host through the Ingress's address.
    async fn self_check(&self, identifier: &str, token: &str, key: &str) -> Result<(), BoxError> {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &self.namespace());
        let deadline = Instant::now() + SELF_CHECK;
        let path = format!("/.well-known/acme-challenge/{token}");
        let ingress_name = self.ingress_name(identifier, token);
        let mut last = format!("the Ingress {ingress_name:?} has no address yet");
        while Instant::now() < deadline {
            let ingress = api.get_opt(&ingress_name).await?;
            let address = ingress
                .and_then(|i| i.status?.load_balancer?.ingress?.into_iter().next())
                .and_then(|a| a.ip.or(a.hostname));
            if let Some(address) = address {
                match get(&address, identifier, &path).await {
                    Ok(body) if body.trim() == key => return Ok(()),
                    Ok(body) => last = format!("{address} answered {:?}", body.chars().take(80).collect::<String>()),
                    Err(e) => last = format!("{address}: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!("self check of http://{identifier}{path} failed: {last}").into())
    }

    async fn remove(&self, identifier: &str, token: &str) -> Result<(), kube::Error> {
        let namespace = self.namespace();
        let name = Self::solver_name(token);
        let dp = DeleteParams::default();
        let ingresses = Api::<Ingress>::namespaced(self.client.clone(), &namespace);
        match self.ingress_settings(identifier).name {
            Some(existing) => edit::remove_path(&ingresses, &existing, identifier, token).await?,
            None => ignore_missing(ingresses.delete(&name, &dp).await.map(|_| ()))?,
        }
        ignore_missing(
            Api::<Service>::namespaced(self.client.clone(), &namespace)
                .delete(&name, &dp)
                .await
                .map(|_| ()),
        )?;
        ignore_missing(
            Api::<Pod>::namespaced(self.client.clone(), &namespace)
                .delete(&name, &dp)
                .await
                .map(|_| ()),
        )
    }
}

impl weft_acme::Http01Solver for Solver {
    async fn present(&self, identifier: &str, token: &str, key_authorization: &str) -> Result<(), BoxError> {
        let solver = self.solver_for(identifier)?;
        let challenge = self
            .create_challenge(identifier, token, key_authorization, solver)
            .await?;
        let presented = match self.create_solver(identifier, token, key_authorization).await {
            Ok(()) => self.self_check(identifier, token, key_authorization).await,
            Err(kube::Error::Api(e)) => Err(e.message.into()),
            Err(e) => Err(e.into()),
        };
        match &presented {
            Ok(()) => {
                let message = "Presented challenge using HTTP-01 challenge mechanism";
                events::publish(&self.client, &challenge, events::NORMAL, "Presented", message).await;
            }
            Err(e) => {
                let message = format!("Error presenting challenge: {e}");
                events::publish(&self.client, &challenge, events::WARNING, "PresentError", &message).await;
            }
        }
        presented
    }

    async fn clean_up(&self, identifier: &str, token: &str) -> Result<(), BoxError> {
        Ok(self.remove(identifier, token).await?)
    }
}

/// GET `path` from `address` (port 80) with `host` as the Host header; the body.
async fn get(address: &str, host: &str, path: &str) -> Result<String, BoxError> {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect((address, 80))).await??;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", host)
        .body(Empty::<bytes::Bytes>::new())?;
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request)).await??;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A short stable hash (FNV-1a) for names and labels, as cert-manager hashes tokens and domains.
fn short_hash(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, kube::Error> {
    serde_json::from_value(value).map_err(kube::Error::SerdeError)
}

fn ignore_exists<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

fn ignore_missing(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
}
