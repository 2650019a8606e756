//! weft's verbs as a client of the lab's Kubernetes API: kube-rs over HTTPS with the lab's admin kubeconfig,
//! raw requests (the verbs work on any kind as JSON), a tokio runtime driven by `block_on`.

use anyhow::{Context, Result};
use futures::{AsyncBufReadExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::fmt;
use weft_lab::spec::Paths;
use weft_model::kind::Resource;

/// The Accept header that asks for a server-side Table (kubectl's own).
pub const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
/// The field manager of weft's writes.
pub const MANAGER: &str = "weft";

/// An answer's body as JSON (`Null` when empty); a non-2xx answer becomes a `ServerError`.
fn body(status: StatusCode, bytes: &[u8]) -> Result<Value> {
    if !status.is_success() {
        return Err(ServerError::from_body(status, bytes).into());
    }
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).context("the server's answer is not JSON")
}

/// A refusal by the API server, printed as kubectl prints it.
#[derive(Debug)]
pub struct ServerError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    /// `details.kind` of the Status: the resource it is about (`namespaces`).
    pub resource: String,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason.as_str() {
            "" => write!(f, "Error from server: {}", self.message),
            r => write!(f, "Error from server ({r}): {}", self.message),
        }
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    /// The Status in an error answer (or the body as the message when it is none).
    fn from_body(code: StatusCode, body: &[u8]) -> ServerError {
        let status: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |p: &str| {
            status
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let message = match text("/message") {
            m if m.is_empty() => String::from_utf8_lossy(body).trim().to_string(),
            m => m,
        };
        ServerError {
            code: code.as_u16(),
            reason: text("/reason"),
            message,
            resource: text("/details/kind"),
        }
    }
}

/// One answer: its status and JSON body, and the `Warning` headers the server sent.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub warnings: Vec<String>,
}

/// One request for `Api::call_all`.
pub struct Call<'a> {
    pub method: Method,
    pub uri: String,
    pub content_type: &'a str,
    pub accept: &'a str,
    pub body: Vec<u8>,
}

impl<'a> Call<'a> {
    /// A GET of `uri` as `accept`.
    pub fn get(uri: String, accept: &'a str) -> Call<'a> {
        Call {
            method: Method::GET,
            uri,
            content_type: "application/json",
            accept,
            body: Vec::new(),
        }
    }
}

/// A connection to one lab's API.
pub struct Api {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
}

impl Api {
    /// Connects with the lab's own kubeconfig (its admin client certificate).
    pub fn connect(paths: &Paths) -> Result<Api> {
        let file = paths.kubeconfig();
        if !file.exists() {
            anyhow::bail!(
                "lab {}: not running (start it with `weft lab up`, or pick another with --lab)",
                paths.lab
            );
        }
        Api::connect_kubeconfig(&file)
    }

    /// Connects with the kubeconfig in `file` (a cluster's, not a lab's).
    pub fn connect_kubeconfig(file: &std::path::Path) -> Result<Api> {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(file).with_context(|| format!("reading {}", file.display()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        let client = runtime.block_on(async {
            let options = kube::config::KubeConfigOptions::default();
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
            anyhow::Ok(kube::Client::try_from(config)?)
        })?;
        Ok(Api { runtime, client })
    }

    /// Sends one request; a non-2xx answer becomes a `ServerError`.
    pub fn call(&self, method: Method, uri: &str, content_type: &str, accept: &str, body: Vec<u8>) -> Result<Answer> {
        let call = Call {
            method,
            uri: uri.to_string(),
            content_type,
            accept,
            body,
        };
        self.runtime.block_on(self.answer(call))
    }

    /// Sends every request at once (each on a connection of its own when need be); the answers in their order.
    pub fn call_all(&self, calls: Vec<Call<'_>>) -> Vec<Result<Answer>> {
        self.runtime
            .block_on(futures::future::join_all(calls.into_iter().map(|c| self.answer(c))))
    }

    /// GETs every object at `uris` at once (JSON): each one's body, or None for those the server does not have
    /// (a 404 is an answer here, not an error).
    pub fn get_all_existing(&self, uris: Vec<String>) -> Vec<Result<Option<Value>>> {
        let calls = uris.into_iter().map(|uri| Call::get(uri, "application/json"));
        self.runtime.block_on(futures::future::join_all(calls.map(|call| async {
            let (status, _, bytes) = self.exchange(call).await?;
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            Ok(Some(body(status, &bytes)?))
        })))
    }

    async fn answer(&self, call: Call<'_>) -> Result<Answer> {
        let (status, warnings, bytes) = self.exchange(call).await?;
        let body = body(status, &bytes)?;
        Ok(Answer { status, body, warnings })
    }

    /// Sends `call`: the answer's status, warnings and body, whatever the status.
    async fn exchange(&self, call: Call<'_>) -> Result<(StatusCode, Vec<String>, hyper::body::Bytes)> {
        let request = Request::builder()
            .method(call.method)
            .uri(call.uri)
            .header(http::header::CONTENT_TYPE, call.content_type)
            .header(http::header::ACCEPT, call.accept)
            .body(kube::client::Body::from(call.body))
            .context("building the request")?;
        let response = self.client.send(request).await?;
        let status = response.status();
        let warnings = response
            .headers()
            .get_all(http::header::WARNING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(warning_text)
            .collect();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, warnings, bytes))
    }

    /// GET of a path as JSON (`accept` chooses Table or object).
    pub fn get(&self, uri: &str, accept: &str) -> Result<Value> {
        Ok(self
            .runtime
            .block_on(self.answer(Call::get(uri.to_string(), accept)))?
            .body)
    }

    /// Streams a GET's body line by line (watches, followed logs) to `each` until the server ends it or `each`
    /// returns false.
    pub fn stream(&self, uri: &str, accept: &str, mut each: impl FnMut(&str) -> Result<bool>) -> Result<()> {
        let request = Request::builder()
            .uri(uri)
            .header(http::header::ACCEPT, accept)
            .body(Vec::new())
            .context("building the request")?;
        self.runtime.block_on(async {
            let reader = self.client.request_stream(request).await.map_err(from_kube)?;
            let mut lines = reader.lines();
            while let Some(line) = lines.next().await {
                if !each(&line.context("reading from the server")?)? {
                    break;
                }
            }
            Ok(())
        })
    }

    /// The resource a user names (`pods`, `po`, `deploy`, `deployments.apps`, a CRD's names).
    pub fn resource(&self, word: &str) -> Result<Resource> {
        if let Some(r) = weft_model::kind::builtin()
            .iter()
            .find(|r| weft_model::kind::names(r, word))
        {
            return Ok(r.clone());
        }
        self.custom_resources()?
            .into_iter()
            .find(|r| weft_model::kind::names(r, word) || r.kind.eq_ignore_ascii_case(word))
            .ok_or_else(|| anyhow::anyhow!("the server doesn't have a resource type \"{word}\""))
    }

    /// The resource that serves objects of `api_version` and `kind` (a manifest's).
    pub fn resource_of(&self, api_version: &str, kind: &str) -> Result<Resource> {
        let builtin = weft_model::kind::builtin()
            .iter()
            .find(|r| r.kind == kind && r.api_version() == api_version);
        if let Some(r) = builtin {
            return Ok(r.clone());
        }
        self.custom_resources()?
            .into_iter()
            .find(|r| r.kind == kind && r.api_version() == api_version)
            .ok_or_else(|| anyhow::anyhow!("no matches for kind \"{kind}\" in version \"{api_version}\""))
    }

    /// Every served version of every CustomResourceDefinition, as resources.
    fn custom_resources(&self) -> Result<Vec<Resource>> {
        let list = self.get(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            "application/json",
        )?;
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(crd_resources)
            .collect())
    }
}

/// A kube-rs error, with the server's Status as a `ServerError`.
fn from_kube(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(status) => ServerError {
            code: status.code,
            reason: status.reason.clone(),
            message: status.message.clone(),
            resource: status.details.as_ref().map(|d| d.kind.clone()).unwrap_or_default(),
        }
        .into(),
        other => other.into(),
    }
}

/// The text of a `Warning: 299 - "text"` header.
fn warning_text(header: &str) -> String {
    let text = header.splitn(3, ' ').nth(2).unwrap_or(header);
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .replace("\\\"", "\"")
}

/// The resources a CRD serves, one per served version.
fn crd_resources(crd: &Value) -> Vec<Resource> {
    let text = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    let short_names: Vec<String> = crd
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let kind = text("/spec/names/kind");
    let singular = match text("/spec/names/singular") {
        s if s.is_empty() => kind.to_ascii_lowercase(),
        s => s,
    };
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v["served"] != json!(false))
        .filter_map(|v| v["name"].as_str())
        .map(|version| Resource {
            group: text("/spec/group"),
            version: version.to_string(),
            kind: kind.clone(),
            plural: text("/spec/names/plural"),
            singular: singular.clone(),
            namespaced: text("/spec/scope") != "Cluster",
            short_names: short_names.clone(),
            categories: Vec::new(),
            subresources: Vec::new(),
            create_only: false,
        })
        .collect()
}

/// The path of `r`'s objects (in `namespace` when namespaced and given), or of one of them.
pub fn path(r: &Resource, namespace: Option<&str>, name: Option<&str>) -> String {
    let mut p = match r.group.as_str() {
        "" => format!("/api/{}", r.version),
        g => format!("/apis/{g}/{}", r.version),
    };
    if let Some(ns) = namespace.filter(|_| r.namespaced) {
        p.push_str(&format!("/namespaces/{}", encode(ns)));
    }
    p.push('/');
    p.push_str(&r.plural);
    if let Some(name) = name {
        p.push('/');
        p.push_str(&encode(name));
    }
    p
}

/// `pod`, `deployment.apps`: how kubectl's `-o name` and messages name a resource's objects.
pub fn kind_name(r: &Resource) -> String {
    match r.group.as_str() {
        "" => r.kind.to_ascii_lowercase(),
        g => format!("{}.{g}", r.kind.to_ascii_lowercase()),
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&...` with the values encoded; empty values are left out.
pub fn with_query(path: &str, query: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = query
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    match pairs.is_empty() {
        true => path.to_string(),
        false => format!("{path}?{}", pairs.join("&")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_namespaced_only_for_namespaced_resources() {
        let pods = weft_model::kind::by_kind("Pod").unwrap();
        let nodes = weft_model::kind::by_kind("Node").unwrap();
        let deploys = weft_model::kind::by_kind("Deployment").unwrap();
        assert_eq!(
            path(pods, Some("default"), Some("x")),
            "/api/v1/namespaces/default/pods/x"
        );
        assert_eq!(path(pods, None, None), "/api/v1/pods");
        assert_eq!(path(nodes, Some("default"), Some("node-1")), "/api/v1/nodes/node-1");
        assert_eq!(
            path(deploys, Some("a b"), None),
            "/apis/apps/v1/namespaces/a%20b/deployments"
        );
        assert_eq!(kind_name(deploys), "deployment.apps");
        assert_eq!(kind_name(pods), "pod");
        assert_eq!(
            with_query("/x", &[("labelSelector", "app=web,tier"), ("limit", "")]),
            "/x?labelSelector=app%3Dweb%2Ctier"
        );
    }

    #[test]
    fn errors_print_as_kubectl_prints_them() {
        let body = br#"{"kind":"Status","status":"Failure","message":"pods \"x\" not found","reason":"NotFound","details":{"name":"x","kind":"pods"},"code":404}"#;
        let e = ServerError::from_body(StatusCode::NOT_FOUND, body);
        assert_eq!(e.to_string(), "Error from server (NotFound): pods \"x\" not found");
        assert_eq!(e.resource, "pods");
        let e = ServerError::from_body(StatusCode::BAD_GATEWAY, b"upstream gone");
        assert_eq!(e.to_string(), "Error from server: upstream gone");
        assert_eq!(warning_text("299 - \"a \\\"b\\\" c\""), "a \"b\" c");
    }

    #[test]
    fn crds_serve_each_served_version() {
        let crd = json!({"spec": {"group": "example.com", "scope": "Cluster",
            "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true}, {"name": "v0", "served": false}]}});
        let rs = crd_resources(&crd);
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].api_version(), "example.com/v1");
        assert!(!rs[0].namespaced);
        assert!(weft_model::kind::names(&rs[0], "wd"));
        assert!(weft_model::kind::names(&rs[0], "widget"));
    }
}
