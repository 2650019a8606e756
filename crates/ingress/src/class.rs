//! Which Ingresses this controller serves: those whose class (`spec.ingressClassName`, else the legacy
//! `kubernetes.io/ingress.class` annotation) is an IngressClass whose `spec.controller` is ours, and those with
//! no class at all when one of our IngressClasses is annotated as the cluster's default.

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use std::collections::BTreeSet;

pub const LEGACY_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub const DEFAULT_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Classes {
    /// Names of the IngressClasses served.
    served: BTreeSet<String>,
    /// Whether one of them is the default class.
    default: bool,
}

impl Classes {
    /// The classes of `controller` among `classes`.
    pub fn of<'a>(controller: &str, classes: impl IntoIterator<Item = &'a IngressClass>) -> Classes {
        let mut out = Classes::default();
        for class in classes {
            let ours = class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(controller);
            let Some(name) = class.metadata.name.clone().filter(|_| ours) else {
                continue;
            };
            let annotations = class.metadata.annotations.as_ref();
            out.default |= annotations
                .and_then(|a| a.get(DEFAULT_ANNOTATION))
                .is_some_and(|v| v == "true");
            out.served.insert(name);
        }
        out
    }

    pub fn admits(&self, ingress: &Ingress) -> bool {
        let field = ingress.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref());
        let annotation = || {
            ingress
                .metadata
                .annotations
                .as_ref()?
                .get(LEGACY_ANNOTATION)
                .map(String::as_str)
        };
        match field.or_else(annotation) {
            Some(class) => self.served.contains(class),
            None => self.default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, controller: &str, default: Option<&str>) -> IngressClass {
        let mut value = json!({"metadata": {"name": name}, "spec": {"controller": controller}});
        if let Some(d) = default {
            value["metadata"]["annotations"] = json!({DEFAULT_ANNOTATION: d});
        }
        serde_json::from_value(value).unwrap()
    }

    fn ingress(class: Option<&str>, annotation: Option<&str>) -> Ingress {
        let mut value = json!({"metadata": {"name": "i", "namespace": "default"}, "spec": {}});
        if let Some(c) = class {
            value["spec"]["ingressClassName"] = json!(c);
        }
        if let Some(a) = annotation {
            value["metadata"]["annotations"] = json!({LEGACY_ANNOTATION: a});
        }
        serde_json::from_value(value).unwrap()
    }

    const OURS: &str = "weft.dev/ingress";

    #[test]
    fn classes_of_our_controller_are_served_by_field_or_legacy_annotation() {
        let all = [
            class("weft", OURS, None),
            class("nginx", OURS, None),
            class("other", "k8s.io/x", None),
        ];
        let classes = Classes::of(OURS, &all);
        assert!(classes.admits(&ingress(Some("nginx"), None)));
        assert!(classes.admits(&ingress(Some("weft"), None)));
        assert!(classes.admits(&ingress(None, Some("nginx"))));
        assert!(!classes.admits(&ingress(Some("other"), None)));
        assert!(!classes.admits(&ingress(None, Some("other"))));
        assert!(!classes.admits(&ingress(Some("missing"), None)));
        // No class and no default: ignored.
        assert!(!classes.admits(&ingress(None, None)));
    }

    #[test]
    fn classless_ingresses_go_to_our_default_class_only() {
        let ours = Classes::of(OURS, &[class("weft", OURS, Some("true"))]);
        assert!(ours.admits(&ingress(None, None)));
        let theirs = Classes::of(
            OURS,
            &[class("weft", OURS, Some("false")), class("x", "k8s.io/x", Some("true"))],
        );
        assert!(!theirs.admits(&ingress(None, None)));
    }
}
