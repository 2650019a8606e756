use crate::{Object, parse, validate_update};

/// The errors for an Ingress with this spec, one `field ...` line each; empty when it is accepted.
fn ingress(spec: &str) -> Vec<String> {
    errors(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: i, namespace: default}}\nspec:\n{spec}"
    ))
}

fn class(spec: &str) -> Vec<String> {
    errors(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: c}}\nspec:\n{spec}"
    ))
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, "t") {
        Ok(_) => Vec::new(),
        Err(e) => e.message.lines().map(str::to_string).collect(),
    }
}

/// One rule routing `path` of `host` to Service `web`, with the given path type and port.
fn rule(host: &str, path: &str, path_type: &str, port: &str) -> String {
    format!(
        "  rules:\n  - host: {host:?}\n    http:\n      paths:\n      - path: {path:?}\n        pathType: {path_type}\n        \
         backend: {{service: {{name: web, port: {port}}}}}\n"
    )
}

const PATH: &str = "spec.rules[0].http.paths[0]";

#[test]
fn a_valid_ingress_is_accepted() {
    assert_eq!(
        ingress(&rule("shop.example.com", "/", "Prefix", "{number: 80}")),
        Vec::<String>::new()
    );
    assert!(ingress(&rule("*.example.com", "/a", "Exact", "{name: http}")).is_empty());
    assert!(ingress(&rule("", "", "ImplementationSpecific", "{number: 80}")).is_empty());
    assert!(ingress("  defaultBackend: {service: {name: web, port: {number: 80}}}\n").is_empty());
    let tls = "  tls: [{hosts: [a.example.com, '*.example.com'], secretName: shop-tls}]\n";
    assert!(
        ingress(&format!(
            "{}{tls}  ingressClassName: weft\n",
            rule("a.example.com", "/", "Prefix", "{number: 80}")
        ))
        .is_empty()
    );
}

#[test]
fn hosts_are_dns_names_without_ports_or_addresses() {
    let ip = ingress(&rule("10.0.0.1", "/", "Prefix", "{number: 80}"));
    assert_eq!(
        ip,
        ["field spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"]
    );
    let port = ingress(&rule("shop.example.com:8080", "/", "Prefix", "{number: 80}"));
    assert!(
        port[0].starts_with(
            "field spec.rules[0].host: Invalid value: \"shop.example.com:8080\": a lowercase RFC 1123 subdomain"
        ),
        "{port:?}"
    );
    assert_eq!(
        ingress(&rule("Shop.example.com", "/", "Prefix", "{number: 80}")).len(),
        1
    );
    let v6 = ingress(&rule("::1", "/", "Prefix", "{number: 80}"));
    assert!(v6[0].contains("not an IP address") && v6.len() == 2, "{v6:?}");
}

#[test]
fn a_wildcard_is_one_leading_label() {
    for bad in ["*", "*.*.example.com", "a.*.example.com", "*example.com", "*.-x.com"] {
        let errs = ingress(&rule(bad, "/", "Prefix", "{number: 80}"));
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert!(
            errs[0].contains("a wildcard DNS-1123 subdomain must start with '*.'"),
            "{errs:?}"
        );
    }
}

#[test]
fn paths_need_a_type_and_an_absolute_path() {
    assert_eq!(
        ingress(&rule("", "/", "\"\"", "{number: 80}")),
        [format!(
            "field {PATH}.pathType: Required value: pathType must be specified"
        )]
    );
    assert_eq!(
        ingress(&rule("", "/", "Regex", "{number: 80}")),
        [format!(
            "field {PATH}.pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""
        )]
    );
    for t in ["Exact", "Prefix"] {
        assert_eq!(
            ingress(&rule("", "api", t, "{number: 80}")),
            [format!(
                "field {PATH}.path: Invalid value: \"api\": must be an absolute path"
            )]
        );
        assert_eq!(ingress(&rule("", "", t, "{number: 80}")).len(), 1);
    }
    assert_eq!(
        ingress(&rule("", "api", "ImplementationSpecific", "{number: 80}")).len(),
        1
    );
    let dots = ingress(&rule("", "/a/../b/.", "Prefix", "{number: 80}"));
    assert_eq!(
        dots,
        [
            format!("field {PATH}.path: Invalid value: \"/a/../b/.\": must not contain '/../'"),
            format!("field {PATH}.path: Invalid value: \"/a/../b/.\": cannot end with '/.'"),
        ]
    );
    assert!(ingress(&rule("", "/a%2Fb", "Exact", "{number: 80}"))[0].contains("must not contain '%2F'"));
    let no_paths = ingress("  rules: [{host: a.example.com, http: {paths: []}}]\n");
    assert_eq!(no_paths, ["field spec.rules[0].http.paths: Required value"]);
}

#[test]
fn a_backend_is_one_service_with_one_port() {
    let number = ingress(&rule("", "/", "Prefix", "{number: 70000}"));
    assert_eq!(
        number,
        [format!(
            "field {PATH}.backend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive"
        )]
    );
    let both = ingress(&rule("", "/", "Prefix", "{number: 80, name: http}"));
    assert_eq!(
        both,
        [format!(
            "field {PATH}.backend: Invalid value: \"\": cannot set both port name & port number"
        )]
    );
    let neither = ingress(&rule("", "/", "Prefix", "{}"));
    assert_eq!(
        neither,
        [format!(
            "field {PATH}.backend: Required value: port name or number is required"
        )]
    );
    let name = ingress(&rule("", "/", "Prefix", "{name: HTTP--x}"));
    assert_eq!(name.len(), 2, "{name:?}");
    assert!(name[0].starts_with(&format!(
        "field {PATH}.backend.service.port.name: Invalid value: \"HTTP--x\""
    )));

    let svc = |backend: &str| ingress(&format!("  defaultBackend: {backend}\n"));
    assert_eq!(svc("{service: {name: 1web, port: {number: 80}}}").len(), 1);
    assert!(
        svc("{service: {name: 1web, port: {number: 80}}}")[0]
            .contains("spec.defaultBackend.service.name: Invalid value: \"1web\": a DNS-1035 label")
    );
    assert_eq!(
        svc("{service: {port: {number: 80}}}"),
        ["field spec.defaultBackend.service.name: Required value"]
    );
    assert_eq!(
        svc("{}"),
        ["field spec.defaultBackend: Invalid value: \"\": resource or service backend is required"]
    );
    let both = svc("{service: {name: web, port: {number: 80}}, resource: {kind: Bucket, name: b}}");
    assert_eq!(
        both,
        ["field spec.defaultBackend: Invalid value: \"\": cannot set both resource and service backends"]
    );
    assert!(svc("{resource: {apiGroup: example.com, kind: Bucket, name: b}}").is_empty());
    assert_eq!(
        svc("{resource: {kind: Bucket, name: a/b}}"),
        ["field spec.defaultBackend.resource.name: Invalid value: \"a/b\": may not contain '/'"]
    );
}

#[test]
fn the_spec_needs_rules_or_a_default_backend() {
    assert_eq!(
        ingress("  {}\n"),
        ["field spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"]
    );
}

#[test]
fn tls_and_class_names_are_checked() {
    let base = rule("a.example.com", "/", "Prefix", "{number: 80}");
    let tls = ingress(&format!(
        "{base}  tls: [{{hosts: ['a.example.com:443', '*'], secretName: Shop_TLS}}]\n"
    ));
    assert_eq!(tls.len(), 3, "{tls:?}");
    assert!(tls[0].starts_with("field spec.tls[0].hosts[0]: Invalid value: \"a.example.com:443\""));
    assert!(tls[1].starts_with("field spec.tls[0].hosts[1]: Invalid value: \"*\": a wildcard"));
    assert!(tls[2].starts_with("field spec.tls[0].secretName: Invalid value: \"Shop_TLS\""));
    let class = ingress(&format!("{base}  ingressClassName: Weft!\n"));
    assert_eq!(class.len(), 1);
    assert!(class[0].starts_with("field spec.ingressClassName: Invalid value: \"Weft!\""));
}

#[test]
fn the_class_annotation_must_agree_with_the_field() {
    let text = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: i\n  annotations: {{kubernetes.io/ingress.class: nginx}}\nspec:\n  ingressClassName: weft\n{}",
        rule("", "/", "Prefix", "{number: 80}")
    );
    assert_eq!(
        errors(&text),
        [
            "field annotations.kubernetes.io/ingress.class: Invalid value: \"nginx\": must match `ingressClassName` when both are specified"
        ]
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let spec = format!(
        "{}  - host: 10.1.1.1\n    http: {{paths: [{{path: x, pathType: Exact, backend: {{service: {{name: web, port: {{number: 0}}}}}}}}]}}\n",
        rule("bad host", "/", "Fuzzy", "{number: 80}")
    );
    let errs = ingress(&spec);
    let fields: Vec<&str> = errs.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        fields,
        [
            "field spec.rules[0].host",
            "field spec.rules[0].http.paths[0].pathType",
            "field spec.rules[1].host",
            "field spec.rules[1].http.paths[0].path",
            "field spec.rules[1].http.paths[0].backend",
        ],
        "{errs:?}"
    );
}

#[test]
fn an_ingress_class_names_a_domain_prefixed_controller() {
    assert!(class("  controller: weft.dev/ingress\n").is_empty());
    assert_eq!(class("  {}\n"), ["field spec.controller: Required value"]);
    for bad in ["weft", "/ingress", "weft.dev/", "Weft.dev/x", "weft.dev/a b"] {
        let errs = class(&format!("  controller: {bad:?}\n"));
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert!(
            errs[0].starts_with("field spec.controller: Invalid value: "),
            "{errs:?}"
        );
    }
    let long = format!("  controller: weft.dev/{}\n", "a".repeat(250));
    assert_eq!(
        class(&long),
        ["field spec.controller: Too long: may not be more than 250 bytes"]
    );
}

#[test]
fn ingress_class_parameters_are_scoped() {
    let with = |p: &str| class(&format!("  controller: weft.dev/ingress\n  parameters: {p}\n"));
    assert!(with("{apiGroup: weft.dev, kind: Params, name: p}").is_empty());
    assert!(with("{kind: Params, name: p, scope: Namespace, namespace: ops}").is_empty());
    assert_eq!(
        with("{kind: Params, name: p, scope: Namespace}"),
        ["field spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]
    );
    assert_eq!(
        with("{kind: Params, name: p, namespace: ops}"),
        ["field spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"]
    );
    assert_eq!(
        with("{name: p, scope: Node}"),
        [
            "field spec.parameters.kind: Required value",
            "field spec.parameters.scope: Unsupported value: \"Node\": supported values: \"Cluster\", \"Namespace\"",
        ]
    );
}

#[test]
fn an_ingress_class_controller_is_immutable() {
    let parsed = |controller: &str, labels: &str| -> Object {
        let text = format!(
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: c, labels: {{{labels}}}}}\nspec: {{controller: {controller}}}\n"
        );
        parse(&text, "t").unwrap().remove(0)
    };
    let old = parsed("weft.dev/ingress", "");
    assert_eq!(validate_update(&old, &parsed("weft.dev/ingress", "tier: edge")), Ok(()));
    assert_eq!(
        validate_update(&old, &parsed("nginx.org/ingress", "")),
        Err("field spec.controller: Invalid value: \"nginx.org/ingress\": field is immutable".into())
    );
}
