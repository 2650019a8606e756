//! `weft get`'s text output: a server-side `Table` (meta.k8s.io/v1) laid out as kubectl prints one.

use serde_json::Value;

/// kubectl's tabwriter: cells padded by 3 spaces to the widest in their column, and at least 6 wide.
const PADDING: usize = 3;
const MIN_WIDTH: usize = 6;

/// `table` as text: upper-case headers, priority 0 columns (all with `wide`), and a NAMESPACE column first, from
/// each row's object, when `with_namespace`.
pub fn render(table: &Value, wide: bool, with_namespace: bool) -> String {
    let columns = table["columnDefinitions"].as_array().map_or(&[][..], Vec::as_slice);
    let shown: Vec<usize> = (0..columns.len())
        .filter(|&i| wide || columns[i]["priority"].as_i64().unwrap_or(0) == 0)
        .collect();
    let mut lines: Vec<Vec<String>> = Vec::new();
    let namespace_header = with_namespace.then(|| "NAMESPACE".to_string());
    lines.push(
        namespace_header
            .into_iter()
            .chain(
                shown
                    .iter()
                    .map(|&i| columns[i]["name"].as_str().unwrap_or_default().to_uppercase()),
            )
            .collect(),
    );
    for row in table["rows"].as_array().into_iter().flatten() {
        let namespace = with_namespace.then(|| {
            row.pointer("/object/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        });
        let cells = row["cells"].as_array().map_or(&[][..], Vec::as_slice);
        lines.push(
            namespace
                .into_iter()
                .chain(shown.iter().map(|&i| cells.get(i).map(cell).unwrap_or_default()))
                .collect(),
        );
    }
    layout(&lines)
}

/// A cell's text: strings up to their first line break (then `...`), nothing for null, JSON for the rest.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => match s.find(['\n', '\r', '\x0c']) {
            Some(end) => format!("{}...", &s[..end]),
            None => s.clone(),
        },
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn layout(lines: &[Vec<String>]) -> String {
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            let widest = lines
                .iter()
                .map(|l| l.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0);
            (widest + PADDING).max(MIN_WIDTH)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        for (i, cell) in line.iter().enumerate() {
            out.push_str(cell);
            // The last cell is not padded.
            if i + 1 < line.len() {
                let pad = widths[i] - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::SystemTime;
    use weft_apiserver::table::{IncludeObject, table};

    fn server_table(kind: &str, objects: &[Value]) -> Value {
        let bytes = table(
            kind,
            objects,
            IncludeObject::Metadata,
            None,
            true,
            SystemTime::now(),
            &json!({}),
        );
        serde_json::from_slice(&bytes).unwrap()
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
    fn pods_show_ready_status_restarts_ip_and_node() {
        let p = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}], "nodeName": "node-2"},
            "status": {"phase": "Running", "podIP": "10.244.2.5",
                       "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2, "state": {"running": {}}}]}
        });
        let t = server_table("Pod", &[p]);
        let rows = cells(&render(&t, true, true));
        assert_eq!(
            rows[0],
            [
                "NAMESPACE",
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ]
        );
        assert_eq!(
            rows[1],
            [
                "default",
                "web-1",
                "1/1",
                "Running",
                "2",
                "<unknown>",
                "10.244.2.5",
                "node-2",
                "<none>",
                "<none>"
            ]
        );
        let narrow = cells(&render(&t, false, false));
        assert_eq!(narrow[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    }

    #[test]
    fn columns_align_as_kubectl_tabwriter_does() {
        let t = json!({"columnDefinitions": [
                {"name": "Name", "priority": 0}, {"name": "Ok", "priority": 0}, {"name": "Count", "priority": 0},
                {"name": "Extra", "priority": 1}],
            "rows": [{"cells": ["a-long-name", true, 7, "x"]}, {"cells": ["b", null, "two\nlines", "y"]}]});
        assert_eq!(
            render(&t, false, false),
            concat!(
                "NAME          OK     COUNT\n",
                "a-long-name   true   7\n",
                "b                    two...\n",
            )
        );
    }

    #[test]
    fn services_show_type_addresses_ports_and_selector() {
        let svcs = [
            json!({"metadata": {"name": "web"}, "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.17",
                "clusterIPs": ["10.96.0.17"], "selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP"}]}}),
            json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.19"],
                "ports": [{"port": 443, "protocol": "TCP", "nodePort": 30443}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "172.18.1.1"}]}}}),
        ];
        let t = server_table("Service", &svcs);
        let rows = cells(&render(&t, true, false));
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
        assert_eq!(rows[2][3..5], ["172.18.1.1", "443:30443/TCP"]);
        assert_eq!(cells(&render(&t, false, false))[0].len(), 6);
    }

    #[test]
    fn namespace_column_comes_from_row_objects() {
        let cms = [
            json!({"metadata": {"name": "a", "namespace": "team-a"}, "data": {"k": "v"}}),
            json!({"metadata": {"name": "b", "namespace": "team-b"}}),
        ];
        let rows = cells(&render(&server_table("ConfigMap", &cms), false, true));
        assert_eq!(rows[0], ["NAMESPACE", "NAME", "DATA", "AGE"]);
        assert_eq!(rows[1], ["team-a", "a", "1", "<unknown>"]);
        assert_eq!(rows[2], ["team-b", "b", "0", "<unknown>"]);
    }
}
