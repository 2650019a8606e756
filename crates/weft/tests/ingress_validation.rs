//! The real kubectl against a bare lab: an invalid Ingress or IngressClass is refused with every bad field named,
//! as kube-apiserver names them, and nothing of it is stored. Root only.

mod lab;

use lab::{Lab, root, text};

/// `kubectl apply -f` of `manifest` (written to a file of this lab's own).
fn apply(lab: &Lab, manifest: &str) -> std::process::Output {
    let file = std::env::temp_dir().join(format!("weft-{}-apply.yaml", lab.name));
    std::fs::write(&file, manifest).unwrap();
    let out = lab.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    out
}

const INVALID: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  rules:
  - host: 10.0.0.1
    http:
      paths:
      - {path: api, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /, pathType: Regex, backend: {service: {name: web, port: {number: 80, name: http}}}}
"#;

const CLASS: &str = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: iv-weft}\n";

#[test]
fn kubectl_apply_of_an_invalid_ingress_names_each_field_and_stores_nothing() {
    if !root() {
        return;
    }
    let lab = Lab::bare(1);

    let out = apply(&lab, INVALID);
    assert!(!out.status.success(), "an invalid Ingress was accepted");
    let err = text(&out.stderr);
    for expected in [
        "The Ingress \"shop\" is invalid",
        "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
        "spec.rules[0].http.paths[0].path: Invalid value: \"api\": must be an absolute path",
        "spec.rules[0].http.paths[1].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \
         \"ImplementationSpecific\", \"Prefix\"",
        "spec.rules[0].http.paths[1].backend: Invalid value: \"\": cannot set both port name & port number",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let get = lab.kubectl(&["get", "ingress", "shop"]);
    assert!(!get.status.success(), "the refused Ingress was stored");
    assert!(text(&get.stderr).contains("NotFound") || text(&get.stderr).contains("not found"));

    // Corrected, the same Ingress is stored.
    let fixed = INVALID
        .replace("10.0.0.1", "shop.example.com")
        .replace("path: api", "path: /api")
        .replace("Regex", "Prefix")
        .replace(", name: http", "");
    let out = apply(&lab, &fixed);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        lab.kubectl_ok(&["get", "ingress", "shop", "-o", "jsonpath={.spec.rules[0].host}"]),
        "shop.example.com"
    );

    // An IngressClass needs a domain-prefixed controller, and keeps it.
    let out = apply(&lab, &format!("{CLASS}spec: {{}}\n"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("spec.controller: Required value"),
        "{}",
        text(&out.stderr)
    );
    let out = apply(&lab, &format!("{CLASS}spec: {{controller: weft.dev/ingress}}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = apply(&lab, &format!("{CLASS}spec: {{controller: nginx.org/ingress}}\n"));
    assert!(!out.status.success(), "the controller was changed");
    let err = text(&out.stderr);
    assert!(
        err.contains("spec.controller: Invalid value: \"nginx.org/ingress\": field is immutable"),
        "{err}"
    );
    assert_eq!(
        lab.kubectl_ok(&["get", "ingressclass", "iv-weft", "-o", "jsonpath={.spec.controller}"]),
        "weft.dev/ingress"
    );
}
