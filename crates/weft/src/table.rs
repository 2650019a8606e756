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

    #[test]
    fn status_prefers_terminating_then_waiting_reasons() {
        let crash = json!({"metadata": {"name": "p"}, "status": {"phase": "Running",
            "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert!(render("Pod", &[crash], false, false).contains("CrashLoopBackOff"));
        let gone = json!({"metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert!(render("Pod", &[gone], false, false).contains("Terminating"));
    }
}
