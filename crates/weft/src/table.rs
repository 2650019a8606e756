//! kubectl-style tables for `weft get`.

use serde_json::Value;

/// Cells of one row: the object and whether -o wide was asked for.
type Row = fn(&Value, bool) -> Vec<String>;

/// The table for `items` of `kind`; `wide` adds kubectl's -o wide columns, `all` a NAMESPACE column.
pub fn render(kind: &str, items: &[Value], wide: bool, all: bool) -> String {
    let (mut header, row): (Vec<&str>, Row) = match kind {
        "Pod" if wide => (vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"], pod),
        "Pod" => (vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"], pod),
        "Deployment" => (vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], deployment),
        "Node" if wide => (vec!["NAME", "STATUS", "ROLES", "AGE", "INTERNAL-IP", "POD-CIDR"], node),
        "Node" => (vec!["NAME", "STATUS", "ROLES", "AGE"], node),
        "Namespace" => (vec!["NAME", "STATUS", "AGE"], namespace),
        "Service" if wide => (
            vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
                "SELECTOR",
            ],
            service,
        ),
        "Service" => (
            vec!["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
            service,
        ),
        "EndpointSlice" => (vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], endpoint_slice),
        "Endpoints" => (vec!["NAME", "ENDPOINTS", "AGE"], endpoints),
        _ => (vec!["NAME", "AGE"], plain),
    };
    let mut rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            let mut cells = row(item, wide);
            if all && weft_model::kind::namespaced(kind) {
                cells.insert(0, text(item, "/metadata/namespace"));
            }
            cells
        })
        .collect();
    if all && weft_model::kind::namespaced(kind) {
        header.insert(0, "NAMESPACE");
    }
    rows.insert(0, header.iter().map(|h| h.to_string()).collect());
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r.get(i).map_or(0, String::len)).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

fn text(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn name(v: &Value) -> String {
    text(v, "/metadata/name")
}

fn pod(v: &Value, wide: bool) -> Vec<String> {
    let statuses = v
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = v
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
    let restarts: i64 = statuses.iter().filter_map(|s| s["restartCount"].as_i64()).sum();
    let mut cells = vec![
        name(v),
        format!("{ready}/{total}"),
        pod_status(v, &statuses),
        restarts.to_string(),
        age(v),
    ];
    if wide {
        let ip = text(v, "/status/podIP");
        let node = text(v, "/spec/nodeName");
        cells.push(if ip.is_empty() { "<none>".into() } else { ip });
        cells.push(if node.is_empty() { "<none>".into() } else { node });
    }
    cells
}

/// The STATUS column as kubectl derives it: Terminating, a container's waiting/terminated reason, or the phase.
fn pod_status(v: &Value, statuses: &[Value]) -> String {
    if v.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    for s in statuses {
        if let Some(reason) = s.pointer("/state/waiting/reason").and_then(Value::as_str) {
            return reason.into();
        }
    }
    let phase = text(v, "/status/phase");
    if phase != "Running" {
        for s in statuses {
            if let Some(reason) = s.pointer("/state/terminated/reason").and_then(Value::as_str) {
                return reason.into();
            }
        }
    }
    if phase.is_empty() { "Pending".into() } else { phase }
}

fn deployment(v: &Value, _wide: bool) -> Vec<String> {
    let want = v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let num = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0).to_string();
    vec![
        name(v),
        format!("{}/{want}", num("/status/readyReplicas")),
        num("/status/updatedReplicas"),
        num("/status/availableReplicas"),
        age(v),
    ]
}

fn node(v: &Value, wide: bool) -> Vec<String> {
    let ready = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    let mut cells = vec![
        name(v),
        if ready { "Ready" } else { "NotReady" }.into(),
        "<none>".into(),
        age(v),
    ];
    if wide {
        let ip = v
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
            .map(|a| text(a, "/address"))
            .unwrap_or_default();
        cells.push(ip);
        cells.push(text(v, "/spec/podCIDR"));
    }
    cells
}

fn namespace(v: &Value, _wide: bool) -> Vec<String> {
    let phase = text(v, "/status/phase");
    vec![name(v), if phase.is_empty() { "Active".into() } else { phase }, age(v)]
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// kubectl's Service row: CLUSTER-IP is the first of clusterIPs ("None" when headless), EXTERNAL-IP the
/// load balancer's addresses (`<pending>` until it has one) and externalIPs, PORT(S) `port[:nodePort]/proto`.
fn service(v: &Value, wide: bool) -> Vec<String> {
    let kind = text(v, "/spec/type");
    let cluster_ip = strings(v, "/spec/clusterIPs")
        .into_iter()
        .next()
        .unwrap_or_else(|| "<none>".into());
    let external_ips = strings(v, "/spec/externalIPs");
    let lb: Vec<String> = v
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let external = match kind.as_str() {
        "ExternalName" => text(v, "/spec/externalName"),
        "LoadBalancer" => {
            let mut lb = lb.join(",");
            if !wide && lb.len() > 16 {
                lb = format!("{}...", &lb[..13]);
            }
            let all: Vec<String> = (!lb.is_empty()).then_some(lb).into_iter().chain(external_ips).collect();
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        _ if !external_ips.is_empty() => external_ips.join(","),
        _ => "<none>".into(),
    };
    let ports: Vec<String> = v
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n > 0) {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    let mut cells = vec![
        name(v),
        if kind.is_empty() { "ClusterIP".into() } else { kind },
        cluster_ip,
        external,
        if ports.is_empty() {
            "<none>".into()
        } else {
            ports.join(",")
        },
        age(v),
    ];
    if wide {
        let selector: Vec<String> = v
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, val)| format!("{k}={}", val.as_str().unwrap_or_default()))
            .collect();
        cells.push(if selector.is_empty() {
            "<none>".into()
        } else {
            selector.join(",")
        });
    }
    cells
}

/// At most three items, then " + N more...", or `<unset>` when there are none (kubectl's listWithMoreString).
fn first_three(items: Vec<String>, empty: &str) -> String {
    if items.is_empty() {
        return empty.into();
    }
    let shown = items[..items.len().min(3)].join(",");
    if items.len() > 3 {
        format!("{shown} + {} more...", items.len() - 3)
    } else {
        shown
    }
}

fn endpoint_slice(v: &Value, _wide: bool) -> Vec<String> {
    let ports: Vec<String> = v
        .pointer("/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_string(),
            _ => "*".into(),
        })
        .collect();
    let addresses: Vec<String> = v
        .pointer("/endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|e| strings(e, "/addresses"))
        .collect();
    vec![
        name(v),
        text(v, "/addressType"),
        first_three(ports, "<unset>"),
        first_three(addresses, "<unset>"),
        age(v),
    ]
}

/// kubectl's ENDPOINTS column: `ip:port` per ready address and port (the address alone without ports).
fn endpoints(v: &Value, _wide: bool) -> Vec<String> {
    let mut items = Vec::new();
    for subset in v.pointer("/subsets").and_then(Value::as_array).into_iter().flatten() {
        let addresses: Vec<String> = subset["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect();
        match subset["ports"].as_array().filter(|p| !p.is_empty()) {
            None => items.extend(addresses),
            Some(ports) => {
                for port in ports {
                    items.extend(addresses.iter().map(|a| format!("{a}:{}", port["port"])));
                }
            }
        }
    }
    vec![name(v), first_three(items, "<none>"), age(v)]
}

fn plain(v: &Value, _wide: bool) -> Vec<String> {
    vec![name(v), age(v)]
}

/// kubectl's short age: 45s, 12m, 3h, 2d.
fn age(v: &Value) -> String {
    let Some(created) = v.pointer("/metadata/creationTimestamp").and_then(Value::as_str) else {
        return "<unknown>".into();
    };
    let Ok(ts) = created.parse::<weft_model::k8s_openapi::jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let secs = (now - ts.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_show_ready_status_restarts_ip_and_node() {
        let p = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}], "nodeName": "node-2"},
            "status": {"phase": "Running", "podIP": "10.244.2.5",
                       "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2, "state": {"running": {}}}]}
        });
        let out = render("Pod", &[p], true, true);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   NAME"));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "default",
                "web-1",
                "1/1",
                "Running",
                "2",
                "<unknown>",
                "10.244.2.5",
                "node-2"
            ]
        );
    }

    fn cells(out: &str) -> Vec<Vec<String>> {
        out.lines()
            .map(|l| {
                l.split("   ")
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn services_show_type_addresses_ports_and_selector() {
        let svcs = [
            json!({"metadata": {"name": "web"}, "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.17",
                "clusterIPs": ["10.96.0.17"], "selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP"}]}}),
            json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.18"],
                "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP", "nodePort": 30053}]}}),
            json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.19"],
                "ports": [{"port": 443, "protocol": "TCP", "nodePort": 30443}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "172.18.1.1"}]}}}),
            json!({"metadata": {"name": "pending"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.20"],
                "ports": [{"port": 1, "protocol": "TCP"}]}, "status": {"loadBalancer": {}}}),
            json!({"metadata": {"name": "db"}, "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}}),
            json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        ];
        let rows = cells(&render("Service", &svcs, true, false));
        assert_eq!(
            rows[0],
            [
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
                "SELECTOR"
            ]
        );
        assert_eq!(
            rows[1],
            [
                "web",
                "ClusterIP",
                "10.96.0.17",
                "<none>",
                "80/TCP",
                "<unknown>",
                "app=web"
            ]
        );
        assert_eq!(
            rows[2],
            [
                "np",
                "NodePort",
                "10.96.0.18",
                "<none>",
                "80:30080/TCP,53:30053/UDP",
                "<unknown>",
                "<none>"
            ]
        );
        assert_eq!(rows[3][3], "172.18.1.1");
        assert_eq!(rows[3][4], "443:30443/TCP");
        assert_eq!(rows[4][3], "<pending>");
        assert_eq!(rows[5][..5], ["db", "ClusterIP", "None", "<none>", "<none>"]);
        assert_eq!(rows[6][..5], ["ext", "ExternalName", "<none>", "example.com", "<none>"]);
        assert_eq!(cells(&render("Service", &svcs, false, false))[0].len(), 6);
    }

    #[test]
    fn endpoint_slices_and_endpoints_list_three_then_count_the_rest() {
        let ep = |ip: &str| json!({"addresses": [ip], "conditions": {"ready": true}});
        let slices = [
            json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4", "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
                "endpoints": [ep("10.244.1.2"), ep("10.244.2.2"), ep("10.244.3.2"), ep("10.244.1.3"), ep("10.244.2.3")]}),
            json!({"metadata": {"name": "web-empty"}, "addressType": "IPv4", "endpoints": []}),
        ];
        let rows = cells(&render("EndpointSlice", &slices, false, false));
        assert_eq!(rows[0], ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]);
        assert_eq!(
            rows[1],
            [
                "web-abc",
                "IPv4",
                "8080",
                "10.244.1.2,10.244.2.2,10.244.3.2 + 2 more...",
                "<unknown>"
            ]
        );
        assert_eq!(rows[2], ["web-empty", "IPv4", "<unset>", "<unset>", "<unknown>"]);
        let eps = [
            json!({"metadata": {"name": "ext"}, "subsets": [{"addresses": [{"ip": "192.0.2.1"}, {"ip": "192.0.2.2"}],
            "ports": [{"port": 5432}]}]}),
        ];
        let rows = cells(&render("Endpoints", &eps, false, false));
        assert_eq!(rows[1], ["ext", "192.0.2.1:5432,192.0.2.2:5432", "<unknown>"]);
    }

    #[test]
    fn status_prefers_terminating_then_waiting_reasons() {
        let crash = json!({"metadata": {"name": "p"}, "status": {"phase": "Running",
            "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert!(render("Pod", &[crash], false, false).contains("CrashLoopBackOff"));
        let gone = json!({"metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert!(render("Pod", &[gone], false, false).contains("Terminating"));
    }
}
