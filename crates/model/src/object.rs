//! One Kubernetes object, typed where weft acts on its kind, kept verbatim otherwise.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// Declares the typed kinds once: the enum variants and the per-kind dispatch (kind name, metadata,
/// serialisation, decoding) all come from this list. Compact variants hold a kind in a node component's compact
/// form (`crate::compact`): they are never decoded from a document, and serialise as the API's form.
macro_rules! typed_kinds {
    ($($kind:ident => $ty:path),* $(,)?; compact: $($compact:ident ($ckind:ident: $full:path) => $cty:path),* $(,)?) => {
        #[derive(Clone, Debug, PartialEq)]
        pub enum Object {
            $($kind(Box<$ty>),)*
            $($compact(Box<$cty>),)*
            /// A kind nothing in weft acts on: stored and listed as written.
            Other(Box<Other>),
        }

        /// The kinds weft has typed structs for.
        pub const TYPED_KINDS: &[&str] = &[$(stringify!($kind)),*];

        impl Object {
            pub fn kind(&self) -> &str {
                match self {
                    $(Object::$kind(_) => stringify!($kind),)*
                    $(Object::$compact(_) => stringify!($ckind),)*
                    Object::Other(o) => &o.kind,
                }
            }

            pub fn meta(&self) -> &ObjectMeta {
                match self {
                    $(Object::$kind(o) => &o.metadata,)*
                    $(Object::$compact(o) => &o.metadata,)*
                    Object::Other(o) => &o.metadata,
                }
            }

            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Object::$kind(o) => &mut o.metadata,)*
                    $(Object::$compact(o) => &mut o.metadata,)*
                    Object::Other(o) => &mut o.metadata,
                }
            }

            /// Decodes a document of a known `kind` into its typed struct (which checks apiVersion and kind).
            pub(crate) fn decode_typed(kind: &str, value: serde_json::Value) -> Result<Object, String> {
                Ok(match kind {
                    $(stringify!($kind) => Object::$kind(Box::new(crate::manifest::typed(value)?)),)*
                    _ => Object::Other(Box::new(crate::manifest::typed::<Other>(value)?)),
                })
            }
        }

        /// Serialises as the Kubernetes API writes the object, straight from the typed value.
        impl Serialize for Object {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(Object::$kind(o) => o.serialize(s),)*
                    $(Object::$compact(o) => <$full>::from(&**o).serialize(s),)*
                    Object::Other(o) => o.serialize(s),
                }
            }
        }
    };
}

typed_kinds! {
    Namespace => k8s_openapi::api::core::v1::Namespace,
    Node => k8s_openapi::api::core::v1::Node,
    Pod => k8s_openapi::api::core::v1::Pod,
    Deployment => k8s_openapi::api::apps::v1::Deployment,
    ReplicaSet => k8s_openapi::api::apps::v1::ReplicaSet,
    DaemonSet => k8s_openapi::api::apps::v1::DaemonSet,
    Service => k8s_openapi::api::core::v1::Service,
    Endpoints => k8s_openapi::api::core::v1::Endpoints,
    EndpointSlice => k8s_openapi::api::discovery::v1::EndpointSlice,
    NetworkPolicy => k8s_openapi::api::networking::v1::NetworkPolicy,
    Event => k8s_openapi::api::core::v1::Event,
    ;
    compact:
    CompactService(Service: k8s_openapi::api::core::v1::Service) => crate::compact::Service,
    CompactSlice(EndpointSlice: k8s_openapi::api::discovery::v1::EndpointSlice) => crate::compact::EndpointSlice,
}

/// An object of a kind weft does not know, kept field for field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Other {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// Where an object lives: kind, namespace (none for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl Key {
    pub fn new(kind: &str, namespace: Option<&str>, name: &str) -> Key {
        Key {
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

impl Object {
    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.meta().namespace.as_deref()
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        labels(self.meta())
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(&self) -> bool {
        crate::kind::namespaced(self.kind())
    }

    pub fn key(&self) -> Key {
        Key::new(self.kind(), self.namespace(), self.name())
    }

    /// Puts a namespaced object without a namespace into `ns`, and takes the namespace off cluster-scoped ones.
    pub fn default_namespace(&mut self, ns: &str) {
        let namespaced = self.namespaced();
        let meta = self.meta_mut();
        if !namespaced {
            meta.namespace = None;
        } else if meta.namespace.as_deref().unwrap_or_default().is_empty() {
            meta.namespace = Some(ns.to_string());
        }
    }

    /// An EndpointSlice as the proxy reads it: borrowed when held compact, made from the API's form otherwise;
    /// none for any other kind.
    pub fn endpoint_slice(&self) -> Option<Cow<'_, crate::compact::EndpointSlice>> {
        match self {
            Object::CompactSlice(slice) => Some(Cow::Borrowed(&**slice)),
            Object::EndpointSlice(slice) => Some(Cow::Owned((&**slice).into())),
            _ => None,
        }
    }

    /// A Service as the proxy reads it: borrowed when held compact, made from the API's form otherwise; none for
    /// any other kind.
    pub fn service(&self) -> Option<Cow<'_, crate::compact::Service>> {
        match self {
            Object::CompactService(svc) => Some(Cow::Borrowed(&**svc)),
            Object::Service(svc) => Some(Cow::Owned((&**svc).into())),
            _ => None,
        }
    }

    /// The object as the Kubernetes API writes it (apiVersion and kind included).
    pub fn to_value(&self) -> serde_json::Value {
        // Serialising these types cannot fail: every map key is a string.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// An object's labels (an empty map when it has none).
pub fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}
