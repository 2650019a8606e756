//! Answering one request: routing, authorization, and the verbs on resources (get, list, create, update, patch,
//! delete, deletecollection; watch is in `watch`, the pod subresources in `pods`).

use crate::auth::UserInfo;
use crate::authz::{Attributes, ResourceAttributes};
use crate::body::{Body, full, json_response};
use crate::cluster::{Cluster, Deletion};
use crate::impersonate::Impersonation;
use crate::patch::{PatchError, PatchType};
use crate::request::{Route, Target, query, route};
use crate::selector::{Fields, Labels};
use crate::status::ApiError;
use crate::table::IncludeObject;
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;
use weft_model::kind::Resource;
use weft_model::{Key, Object, Snapshot};

/// Bodies above this are refused, as kube-apiserver does.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The server's state: where objects come from, and who may do what.
pub struct Api {
    pub cluster: Arc<dyn Cluster>,
    /// Service-account tokens (bearer authentication, TokenRequest, TokenReview); none serves none.
    pub tokens: Option<Arc<crate::tokens::Tokens>>,
    pub rbac: crate::authz::Rbac,
}

impl Api {
    pub fn new(cluster: Arc<dyn Cluster>, tokens: Option<Arc<crate::tokens::Tokens>>) -> Api {
        Api {
            cluster,
            tokens,
            rbac: crate::authz::Rbac::default(),
        }
    }

    /// Whether `user` may do `attrs`; the 403 kube-apiserver answers when not.
    pub fn authorize(&self, snap: &Snapshot, user: &UserInfo, attrs: &Attributes) -> Result<(), ApiError> {
        let decision = self.rbac.authorize(snap, user, attrs);
        match decision.allowed {
            true => Ok(()),
            false => Err(ApiError::forbidden(&user.name, attrs, &decision.reason)),
        }
    }
}

/// One request, read whole (bodies are small; watches and streams answer from `Call` too).
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub accept: String,
    pub content_type: String,
    pub host: String,
    pub user_agent: String,
    pub body: Bytes,
    /// None: no credentials.
    pub user: Option<UserInfo>,
    /// `Authorization: Bearer TOKEN`, authenticated when no client certificate did.
    pub bearer: Option<String>,
    pub impersonation: Impersonation,
    /// All headers, and the query as sent (parameters may repeat: exec's `command`).
    pub headers: hyper::HeaderMap,
    pub raw_query: String,
    /// The connection's switch to another protocol, taken from requests that ask for one (`Upgrade`).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Call {
    pub fn new(parts: &hyper::http::request::Parts, body: Bytes, user: Option<UserInfo>) -> Call {
        let header = |name: hyper::header::HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        Call {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: query(parts.uri.query()),
            accept: header(hyper::header::ACCEPT),
            content_type: header(hyper::header::CONTENT_TYPE),
            host: header(hyper::header::HOST),
            user_agent: header(hyper::header::USER_AGENT),
            body,
            user,
            bearer: header(hyper::header::AUTHORIZATION)
                .strip_prefix("Bearer ")
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            impersonation: Impersonation::from_headers(&parts.headers),
            headers: parts.headers.clone(),
            raw_query: parts.uri.query().unwrap_or_default().to_string(),
            upgrade: None,
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.query.get(name).map(String::as_str), Some("true" | "1" | ""))
    }

    /// Who is writing, for managedFields: `fieldManager`, else the client's name from its User-Agent (as
    /// kube-apiserver defaults it: `kubectl/v1.33 (linux/amd64)` → `kubectl`).
    fn manager(&self) -> String {
        match self.param("fieldManager") {
            Some(m) => m.to_string(),
            None => self.user_agent.split('/').next().unwrap_or_default().to_string(),
        }
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    /// The Table form, when Accept asks for it (kubectl's human output).
    pub fn table(&self) -> Result<Option<IncludeObject>, ApiError> {
        let wants = self
            .accept
            .split(',')
            .any(|t| t.contains("as=Table") && t.contains("g=meta.k8s.io"));
        if !wants {
            return Ok(None);
        }
        IncludeObject::parse(self.param("includeObject"))
            .map(Some)
            .map_err(ApiError::bad_request)
    }
}

/// Answers `call`.
pub async fn answer(api: &Api, call: Call) -> Response<Body> {
    match dispatch(api, call).await {
        Ok(response) => response,
        Err(e) => error(&e),
    }
}

pub fn error(e: &ApiError) -> Response<Body> {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(),
    )
}

/// Who the caller is: the client certificate's user, else the bearer token's (an invalid token is a 401), then
/// whom it impersonates.
fn authenticate(api: &Api, call: &mut Call, snap: &Snapshot) -> Result<(), ApiError> {
    if call.user.is_none()
        && let Some(token) = &call.bearer
    {
        let tokens = api.tokens.as_ref().ok_or_else(ApiError::unauthorized)?;
        let (user, _) = tokens
            .authenticate(token, &crate::tokens::api_audiences(), snap, crate::tokens::unix_now())
            .map_err(|_| ApiError::unauthorized())?;
        call.user = Some(user);
    }
    if !call.impersonation.is_empty() {
        let requester = call.user.as_ref().ok_or_else(ApiError::unauthorized)?;
        call.user = Some(crate::impersonate::impersonate(
            &api.rbac,
            snap,
            requester,
            &call.impersonation,
        )?);
    }
    Ok(())
}

async fn dispatch(api: &Api, mut call: Call) -> Result<Response<Body>, ApiError> {
    let snap = api.cluster.snapshot();
    authenticate(api, &mut call, &snap)?;
    let route = route(&call.path, &snap)?;
    if !matches!(route, Route::Object(_)) {
        match &call.user {
            Some(user) => {
                let verb = call.method.as_str().to_ascii_lowercase();
                api.authorize(&snap, user, &Attributes::non_resource(&verb, &call.path))?;
            }
            // Without credentials only what kube-apiserver's system:public-info-viewer role shows anyone.
            None if matches!(route, Route::Version | Route::Health) => {}
            None => return Err(ApiError::unauthorized()),
        }
    }
    let get_only = || {
        if call.method == Method::GET {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed())
        }
    };
    match route {
        Route::Version => Ok(json_response(StatusCode::OK, &crate::version::info())),
        Route::Health => Ok(Response::builder()
            .header("content-type", "text/plain; charset=utf-8")
            .body(full("ok"))
            .unwrap_or_default()),
        Route::Discovery { core } => {
            get_only()?;
            let resources = crate::registry::all(&snap);
            if let Some(v) = crate::discovery::aggregated_version(&call.accept) {
                let doc = crate::discovery::aggregated(&resources, core, v);
                return Ok(with_type(
                    json_response(StatusCode::OK, &doc),
                    &crate::discovery::aggregated_content_type(v),
                ));
            }
            Ok(json_response(
                StatusCode::OK,
                &match core {
                    true => crate::discovery::api_versions(&call.host),
                    false => crate::discovery::group_list(&resources),
                },
            ))
        }
        Route::Group(group) => {
            get_only()?;
            let doc =
                crate::discovery::api_group(&crate::registry::all(&snap), &group).ok_or_else(ApiError::no_route)?;
            Ok(json_response(StatusCode::OK, &doc))
        }
        Route::ResourceList { group, version } => {
            get_only()?;
            let doc = crate::discovery::resource_list(&crate::registry::all(&snap), &group, &version)
                .ok_or_else(ApiError::no_route)?;
            Ok(json_response(StatusCode::OK, &doc))
        }
        Route::OpenApiV2 => {
            get_only()?;
            if call.accept.contains("protobuf") {
                let response = Response::builder()
                    .header(hyper::header::CONTENT_TYPE, crate::openapi::V2_PROTOBUF)
                    .body(crate::body::full(crate::openapi::v2_protobuf()))
                    .unwrap_or_default();
                return Ok(response);
            }
            Ok(json_response(StatusCode::OK, &crate::openapi::v2_json()))
        }
        Route::OpenApiIndex => {
            get_only()?;
            Ok(json_response(
                StatusCode::OK,
                &crate::openapi::index(&crate::registry::all(&snap)),
            ))
        }
        Route::OpenApiDocument(path) => {
            get_only()?;
            let doc = crate::openapi::document(&crate::registry::all(&snap), &path).ok_or_else(ApiError::no_route)?;
            Ok(json_response(StatusCode::OK, &doc))
        }
        Route::Object(target) => resource(api, &mut call, &snap, *target).await,
    }
}

fn with_type(mut response: Response<Body>, content_type: &str) -> Response<Body> {
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    response
        .headers_mut()
        .insert(hyper::header::VARY, hyper::header::HeaderValue::from_static("Accept"));
    response
}

/// The verb kube-apiserver's authorization sees for this call.
fn verb(call: &Call, target: &Target) -> &'static str {
    let collection = target.name.is_none();
    // Streams are authorized as `create`, also when opened with a WebSocket GET (as kube-apiserver 1.31 on).
    if matches!(
        target.subresource.as_deref(),
        Some("exec" | "attach" | "portforward" | "proxy")
    ) {
        return "create";
    }
    match call.method {
        Method::GET | Method::HEAD if call.flag("watch") => "watch",
        Method::GET | Method::HEAD if collection => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

/// Who sent the call (authentication has answered 401 to calls from nobody before they get here).
fn user(call: &Call) -> Result<&UserInfo, ApiError> {
    call.user.as_ref().ok_or_else(ApiError::unauthorized)
}

async fn resource(api: &Api, call: &mut Call, snap: &Snapshot, target: Target) -> Result<Response<Body>, ApiError> {
    let verb = verb(call, &target);
    api.authorize(snap, user(call)?, &attributes(&target, verb))?;
    // The streaming subresources take GET (WebSocket) and POST (SPDY) alike.
    match (target.subresource.as_deref(), verb) {
        (Some("exec"), "get" | "create") => return crate::remotecommand::exec(api, call, snap, &target),
        (Some("attach"), "get" | "create") => return crate::remotecommand::attach(api, call, snap, &target),
        (Some("portforward"), "get" | "create") => return crate::portforward::portforward(api, call, snap, &target),
        _ => {}
    }
    let call = &*call;
    let r = &target.resource;
    if r.create_only && verb != "create" {
        return Err(ApiError::method_not_allowed());
    }
    match (target.subresource.as_deref(), verb) {
        (Some("log"), "get") => return crate::pods::log(api, call, snap, &target).await,
        (Some("scale"), _) => return scale(api, call, snap, &target, verb),
        (Some("token"), "create") => {
            let body = body_json(call)?;
            return crate::review::token_request(api, snap, &target, body);
        }
        (Some(_), "get" | "update" | "patch") if target.subresource.as_deref() == Some("status") => {}
        (Some(_), _) => return Err(ApiError::method_not_allowed()),
        (None, _) => {}
    }
    match verb {
        "list" => list(call, snap, &target),
        "watch" => crate::watch::watch(api, call, &target),
        "get" => get(call, snap, &target),
        "create" => create(api, call, snap, &target),
        "update" => update(api, call, snap, &target),
        "patch" => patch(api, call, snap, &target),
        "delete" => delete(api, call, snap, &target),
        "deletecollection" => delete_collection(api, call, snap, &target),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// What the authorizer sees of a resource request.
fn attributes(target: &Target, verb: &str) -> Attributes {
    Attributes::resource(
        verb,
        ResourceAttributes {
            group: target.resource.group.clone(),
            resource: target.resource.plural.clone(),
            subresource: target.subresource.clone().unwrap_or_default(),
            namespace: target.namespace.clone().unwrap_or_default(),
            name: target.name.clone().unwrap_or_default(),
        },
    )
}

/// The key of the object a target names.
fn key(target: &Target) -> Result<Key, ApiError> {
    let name = target.name.as_deref().ok_or_else(ApiError::method_not_allowed)?;
    Ok(Key::new(&target.resource.kind, target.namespace.as_deref(), name))
}

fn stored<'a>(snap: &'a Snapshot, target: &Target) -> Result<&'a Object, ApiError> {
    let key = key(target)?;
    snap.get(&key)
        .ok_or_else(|| ApiError::not_found(&target.resource.qualified(), &key.name))
}

/// The selected objects of a collection: one namespace or all, then the label and field selectors.
pub fn selected<'a>(
    snap: &'a Snapshot,
    target: &'a Target,
    labels: &'a Labels,
    fields: &'a Fields,
) -> impl Iterator<Item = &'a Object> + 'a {
    snap.of_kind(&target.resource.kind)
        .filter(move |o| target.namespace.is_none() || o.namespace() == target.namespace.as_deref())
        .filter(move |o| labels.matches(o.labels()) && fields.matches(o))
}

pub fn selectors(call: &Call, kind: &str) -> Result<(Labels, Fields), ApiError> {
    let labels = Labels::parse(call.param("labelSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
    let fields = Fields::parse(call.param("fieldSelector").unwrap_or_default(), kind).map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn list(call: &Call, snap: &Snapshot, target: &Target) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(call, &target.resource.kind)?;
    let limit: usize = match call.param("limit") {
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("limit: invalid value {l:?}")))?,
        None => 0,
    };
    let after = match call.param("continue") {
        Some(token) => Some(continue_from(token)?),
        None => None,
    };
    // One past the page tells whether another page follows.
    let mut items: Vec<&Object> = selected(snap, target, &labels, &fields)
        .filter(|o| {
            after
                .as_ref()
                .is_none_or(|a| (o.namespace().unwrap_or_default(), o.name()) > (&a.0[..], &a.1[..]))
        })
        .take(if limit > 0 { limit + 1 } else { usize::MAX })
        .collect();
    let mut list_meta = json!({"resourceVersion": snap.revision.to_string()});
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        // The count of what is left is not kept; kubectl only shows it when present and positive.
        if let Some(last) = items.last() {
            list_meta["continue"] = json!(continue_token(last.namespace().unwrap_or_default(), last.name()));
        }
    }
    if let Some(include) = call.table()? {
        let columns = crate::crd::printer_columns(snap, &target.resource);
        let table = crate::table::table(
            &target.resource.kind,
            items,
            include,
            columns.as_deref(),
            true,
            SystemTime::now(),
            &list_meta,
        );
        return Ok(crate::body::json_bytes(StatusCode::OK, table));
    }
    #[derive(serde::Serialize)]
    struct List<'a> {
        kind: String,
        #[serde(rename = "apiVersion")]
        api_version: String,
        metadata: Value,
        items: Vec<&'a Object>,
    }
    let body = serde_json::to_vec(&List {
        kind: format!("{}List", target.resource.kind),
        api_version: target.resource.api_version(),
        metadata: list_meta,
        items,
    })
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(crate::body::json_bytes(StatusCode::OK, body))
}

/// A continue token: where the last page ended (namespace and name), hex-encoded so that it is opaque.
fn continue_token(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn continue_from(token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request(format!("continue: invalid token {token:?}"));
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (ns, name) = text.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}

fn get(call: &Call, snap: &Snapshot, target: &Target) -> Result<Response<Body>, ApiError> {
    let object = stored(snap, target)?;
    if let Some(include) = call.table()? {
        let columns = crate::crd::printer_columns(snap, &target.resource);
        let table = crate::table::table(
            &target.resource.kind,
            [object],
            include,
            columns.as_deref(),
            true,
            SystemTime::now(),
            &json!({"resourceVersion": object.meta().resource_version}),
        );
        return Ok(crate::body::json_bytes(StatusCode::OK, table));
    }
    let body = serde_json::to_vec(object).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(crate::body::json_bytes(StatusCode::OK, body))
}

/// The request body as JSON (kubectl sends JSON, or Kubernetes protobuf from its typed clients; YAML is
/// accepted too).
fn body_json(call: &Call) -> Result<Value, ApiError> {
    if call.body.len() > MAX_BODY {
        return Err(ApiError::too_large());
    }
    if call.content_type.starts_with(crate::protobuf::CONTENT_TYPE) {
        return crate::protobuf::decode(&call.body)
            .map_err(|e| ApiError::bad_request(format!("invalid protobuf body: {e}")));
    }
    if call.content_type.contains("cbor") {
        // Clients that offer CBOR fall back to JSON on 415, as they do against an API server without it.
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, {} (got {:?})",
                crate::protobuf::CONTENT_TYPE,
                call.content_type
            ),
        ));
    }
    let text = std::str::from_utf8(&call.body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    if call.content_type.contains("yaml") {
        return serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("invalid YAML: {e}")));
    }
    serde_json::from_str(text).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// Checks a body against the resource the path names and turns it into an object (validated, with unknown
/// fields refused under `fieldValidation=Strict`).
fn decode(
    call: &Call,
    snap: &Snapshot,
    target: &Target,
    mut value: Value,
    warnings: &mut Vec<String>,
) -> Result<Object, ApiError> {
    let r = &target.resource;
    let Some(map) = value.as_object_mut() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let api_version = map.entry("apiVersion").or_insert_with(|| json!(r.api_version()));
    if api_version.as_str() != Some(&r.api_version()) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            api_version.as_str().unwrap_or_default(),
            r.api_version()
        )));
    }
    let kind = map.entry("kind").or_insert_with(|| json!(r.kind));
    if kind.as_str() != Some(&r.kind) {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({}) does not match the expected kind ({})",
            kind.as_str().unwrap_or_default(),
            r.kind
        )));
    }
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if let Some(ns) = &target.namespace {
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => meta["namespace"] = json!(ns),
            Some(other) if other != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            Some(_) => {}
        }
    } else if let Some(m) = meta.as_object_mut() {
        m.remove("namespace");
    }
    if r.kind == "CustomResourceDefinition" {
        crate::crd::accept(&mut value);
    }
    if r.kind == "Secret" && value.get("type").is_none_or(|t| t.as_str().is_none_or(str::is_empty)) {
        value["type"] = json!("Opaque");
    }
    // A custom resource is defaulted, pruned and validated by its definition's schema.
    let mut pruned = Vec::new();
    if let Some(schema) = crate::crd::schema(snap, r) {
        let checked = crate::crd::check(&schema, &mut value);
        if !checked.errors.is_empty() {
            let name = value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Err(ApiError::invalid(&r.kind, name, &checked.errors));
        }
        pruned = checked.unknown;
    }
    let input = value.clone();
    let object = weft_model::manifest::decode(value).map_err(|(_, msg)| invalid(r, &input, msg))?;
    if !matches!(object, Object::Other(_)) {
        pruned = crate::strict::unknown_fields(&input, &object.to_value());
    }
    {
        let unknown = pruned;
        if !unknown.is_empty() {
            let text = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect::<Vec<_>>()
                .join(", ");
            match call.param("fieldValidation") {
                Some("Strict") => {
                    return Err(ApiError::bad_request(format!(
                        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {text}",
                        kind = r.kind,
                        version = r.version
                    )));
                }
                Some("Ignore") => {}
                _ => warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\""))),
            }
        }
    }
    Ok(object)
}

/// A validation failure as the 422 kubectl prints (`The Service "web" is invalid: spec.ports[0].port: ...`).
fn invalid(r: &Resource, input: &Value, msg: String) -> ApiError {
    let name = input
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    ApiError::invalid(&r.kind, name, &crate::status::field_causes(&msg))
}

fn with_warnings(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        if let Ok(v) = format!("299 - \"{}\"", w.replace('"', "\\\"")).parse() {
            response.headers_mut().append(hyper::header::WARNING, v);
        }
    }
    response
}

fn create(api: &Api, call: &Call, snap: &Snapshot, target: &Target) -> Result<Response<Body>, ApiError> {
    if target.name.is_some() {
        return Err(ApiError::method_not_allowed());
    }
    let mut value = body_json(call)?;
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        let named = meta.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        if !named && let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
            let name = format!("{prefix}{}", crate::names::suffix());
            meta.insert("name".into(), json!(name));
        }
    }
    if target.resource.create_only {
        return crate::review::create(api, call, snap, target, value);
    }
    let r = &target.resource;
    crate::patch::record_update(&r.group, &r.kind, None, &mut value, &call.manager(), &now());
    let mut warnings = Vec::new();
    let object = decode(call, snap, target, value, &mut warnings)?;
    crate::authz::escalation::check(&api.rbac, snap, user(call)?, &object)?;
    if let Some(ns) = object.namespace()
        && snap.get(&Key::new("Namespace", None, ns)).is_none()
    {
        return Err(ApiError::not_found("namespaces", ns));
    }
    let created = api.cluster.create(object, call.dry_run())?;
    Ok(with_warnings(
        json_response(StatusCode::CREATED, &created.to_value()),
        &warnings,
    ))
}

fn update(api: &Api, call: &Call, snap: &Snapshot, target: &Target) -> Result<Response<Body>, ApiError> {
    let current = stored(snap, target)?;
    let r = &target.resource;
    let mut value = body_json(call)?;
    crate::patch::record_update(
        &r.group,
        &r.kind,
        Some(&current.to_value()),
        &mut value,
        &call.manager(),
        &now(),
    );
    let mut warnings = Vec::new();
    let object = decode(call, snap, target, value, &mut warnings)?;
    crate::authz::escalation::check(&api.rbac, snap, user(call)?, &object)?;
    write_over(api, call, target, current, object, &warnings)
}

/// Stores `object` over `current`, refusing a stale resourceVersion and a changed name.
fn write_over(
    api: &Api,
    call: &Call,
    target: &Target,
    current: &Object,
    object: Object,
    warnings: &[String],
) -> Result<Response<Body>, ApiError> {
    let resource = target.resource.qualified();
    if object.name() != current.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            object.name(),
            current.name()
        )));
    }
    if let Some(rv) = object.meta().resource_version.as_deref()
        && Some(rv) != current.meta().resource_version.as_deref()
    {
        return Err(ApiError::conflict(&resource, current.name()));
    }
    if same_but_for_manager_times(current, &object) {
        // Nothing changed (a re-apply): no write, no new resourceVersion, as kube-apiserver skips no-op updates.
        return Ok(with_warnings(
            json_response(StatusCode::OK, &current.to_value()),
            warnings,
        ));
    }
    let status = target.subresource.as_deref() == Some("status");
    let updated = api.cluster.update(object, status, call.dry_run())?;
    Ok(with_warnings(
        json_response(StatusCode::OK, &updated.to_value()),
        warnings,
    ))
}

/// Whether `new` is `old` but for the times its managers last wrote.
fn same_but_for_manager_times(old: &Object, new: &Object) -> bool {
    let strip = |o: &Object| {
        let mut v = o.to_value();
        if let Some(entries) = v.pointer_mut("/metadata/managedFields").and_then(Value::as_array_mut) {
            for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("time");
            }
        }
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        v
    };
    strip(old) == strip(new)
}

fn patch(api: &Api, call: &Call, snap: &Snapshot, target: &Target) -> Result<Response<Body>, ApiError> {
    if call.body.len() > MAX_BODY {
        return Err(ApiError::too_large());
    }
    let r = &target.resource;
    let ty = PatchType::from_content_type(&call.content_type)
        .ok_or_else(|| patch_error(PatchError::unsupported_media_type(&r.group, &r.kind)))?;
    let current = match stored(snap, target) {
        Ok(current) => Some(current),
        // Server-side apply creates what does not exist yet.
        Err(e) if e.code == 404 && ty == PatchType::Apply && target.subresource.is_none() => None,
        Err(e) => return Err(e),
    };
    let value = current.map(Object::to_value);
    let patched = match ty {
        PatchType::Apply => {
            let manager = call.param("fieldManager").ok_or_else(|| {
                ApiError::invalid(
                    "PatchOptions",
                    "",
                    &[(
                        "fieldManager".into(),
                        "Required value: is required for apply patch".into(),
                    )],
                )
            })?;
            let applied = crate::patch::parse_apply_body(&call.body).map_err(patch_error)?;
            crate::patch::server_side_apply(
                &r.group,
                &r.kind,
                value.as_ref(),
                &applied,
                manager,
                call.flag("force"),
                &now(),
            )
            .map_err(patch_error)?
        }
        _ => {
            let current = value
                .as_ref()
                .ok_or_else(|| ApiError::not_found(&r.qualified(), target.name.as_deref().unwrap_or_default()))?;
            let mut patched = crate::patch::patch(&r.group, &r.kind, current, ty, &call.body).map_err(patch_error)?;
            crate::patch::record_update(&r.group, &r.kind, Some(current), &mut patched, &call.manager(), &now());
            patched
        }
    };
    let mut warnings = Vec::new();
    let object = decode(call, snap, target, patched, &mut warnings)?;
    crate::authz::escalation::check(&api.rbac, snap, user(call)?, &object)?;
    match current {
        Some(current) => write_over(api, call, target, current, object, &warnings),
        None => {
            let created = api.cluster.create(object, call.dry_run())?;
            Ok(with_warnings(
                json_response(StatusCode::CREATED, &created.to_value()),
                &warnings,
            ))
        }
    }
}

/// A patch engine's refusal as the API reports it.
fn patch_error(e: PatchError) -> ApiError {
    let status = e.status();
    let mut error = ApiError::new(status.code(), status.reason(), e.to_string());
    match &e {
        PatchError::Conflict { conflicts, .. } => {
            error.details = Some(json!({"causes": conflicts.iter().map(|c| json!({
                "reason": "FieldManagerConflict", "message": c.message, "field": c.field,
            })).collect::<Vec<_>>()}));
        }
        PatchError::Rejected { cause } => {
            error.details = Some(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": cause}]}));
        }
        _ => {}
    }
    error
}

/// Now as the API writes times (RFC 3339, seconds).
pub fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    weft_model::k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// DeleteOptions from the body (kubectl sends them there) or the query.
fn deletion(call: &Call) -> Result<Deletion, ApiError> {
    let body = if call.body.is_empty() {
        json!({})
    } else {
        body_json(call)?
    };
    let text = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| call.param(name).map(str::to_string))
    };
    let grace = match body.get("gracePeriodSeconds").and_then(Value::as_i64) {
        Some(g) => Some(g),
        None => match call.param("gracePeriodSeconds") {
            Some(g) => Some(
                g.parse()
                    .map_err(|_| ApiError::bad_request(format!("gracePeriodSeconds: invalid value {g:?}")))?,
            ),
            None => None,
        },
    };
    let orphan = match text("propagationPolicy").as_deref() {
        None | Some("Background" | "Foreground") => body.get("orphanDependents").and_then(Value::as_bool) == Some(true),
        Some("Orphan") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    };
    Ok(Deletion {
        orphan,
        grace_period_seconds: grace,
        uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn delete(api: &Api, call: &Call, snap: &Snapshot, target: &Target) -> Result<Response<Body>, ApiError> {
    let how = deletion(call)?;
    let object = stored(snap, target)?;
    let resource = target.resource.qualified();
    if how
        .uid
        .as_deref()
        .is_some_and(|u| Some(u) != object.meta().uid.as_deref())
        || how
            .resource_version
            .as_deref()
            .is_some_and(|rv| Some(rv) != object.meta().resource_version.as_deref())
    {
        return Err(ApiError::conflict(&resource, object.name()));
    }
    let after = api.cluster.delete(&object.key(), &how, call.dry_run())?;
    Ok(json_response(StatusCode::OK, &after.to_value()))
}

fn delete_collection(api: &Api, call: &Call, snap: &Snapshot, target: &Target) -> Result<Response<Body>, ApiError> {
    let how = deletion(call)?;
    let (labels, fields) = selectors(call, &target.resource.kind)?;
    let keys: Vec<Key> = selected(snap, target, &labels, &fields).map(Object::key).collect();
    let mut items = Vec::new();
    for key in keys {
        items.push(api.cluster.delete(&key, &how, call.dry_run())?.to_value());
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", target.resource.kind),
            "apiVersion": target.resource.api_version(),
            "metadata": {},
            "items": items,
        }),
    ))
}

/// `deployments/NAME/scale` and the other scale subresources: an `autoscaling/v1 Scale` read from and written
/// to the object's `spec.replicas`.
fn scale(api: &Api, call: &Call, snap: &Snapshot, target: &Target, verb: &str) -> Result<Response<Body>, ApiError> {
    let current = stored(snap, target)?;
    let value = current.to_value();
    let selector = value
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let scale = json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": current.name(),
            "namespace": current.namespace(),
            "uid": current.meta().uid,
            "resourceVersion": current.meta().resource_version,
            "creationTimestamp": value.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": value.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": value.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    });
    let wanted = match verb {
        "get" => return Ok(json_response(StatusCode::OK, &scale)),
        "update" => body_json(call)?,
        "patch" => {
            let ty = PatchType::from_content_type(&call.content_type)
                .ok_or_else(|| patch_error(PatchError::unsupported_media_type("autoscaling", "Scale")))?;
            crate::patch::patch("autoscaling", "Scale", &scale, ty, &call.body).map_err(patch_error)?
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                "Scale",
                current.name(),
                &[("spec.replicas".into(), "must be a non-negative integer".into())],
            )
        })?;
    if let Some(rv) = wanted.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        && Some(rv) != current.meta().resource_version.as_deref()
    {
        return Err(ApiError::conflict(&target.resource.qualified(), current.name()));
    }
    let mut value = value;
    value["spec"]["replicas"] = json!(replicas);
    let object = weft_model::manifest::decode(value).map_err(|(_, m)| ApiError::bad_request(m))?;
    let updated = api.cluster.update(object, false, call.dry_run())?.to_value();
    let mut answer = scale;
    answer["spec"]["replicas"] = json!(replicas);
    answer["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"].clone();
    Ok(json_response(StatusCode::OK, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_bad_ones_are_refused() {
        let t = continue_token("default", "web-1");
        assert_eq!(continue_from(&t).unwrap(), ("default".into(), "web-1".into()));
        assert_eq!(continue_from("zz").unwrap_err().code, 400);
        assert_eq!(continue_from("e").unwrap_err().code, 400);
    }

    #[test]
    fn protobuf_bodies_are_read_and_bad_ones_refused() {
        let call = |body: &'static [u8]| {
            let (parts, ()) = hyper::Request::post("/api/v1/namespaces/default/configmaps")
                .header(hyper::header::CONTENT_TYPE, crate::protobuf::CONTENT_TYPE)
                .body(())
                .unwrap()
                .into_parts();
            Call::new(&parts, Bytes::from_static(body), None)
        };
        // k8s\0, Unknown {typeMeta {v1, ConfigMap}, raw: ConfigMap {metadata {name: cm}}}
        let good = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x06\x0a\x04\x0a\x02cm";
        assert_eq!(
            body_json(&call(good)).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}})
        );
        let err = body_json(&call(b"k8s\0\x0a\x05")).unwrap_err();
        assert_eq!((err.code, err.reason), (400, "BadRequest"));
        assert!(
            err.message.starts_with("invalid protobuf body: truncated"),
            "{}",
            err.message
        );
    }
}
