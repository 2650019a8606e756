//! `weft ui` on a real lab: the page, loaded in headless Chromium, shows the lab's pods and a live flow, and
//! the trace a click asks for explains the flow as `weft trace` does.

mod lab;

use lab::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

const APP: &str = concat!(
    include_str!("lab/policy_app.yaml"),
    "---\n",
    include_str!("lab/access_nginx.yaml")
);

/// `weft ui`, killed on drop (also when the test fails).
struct Ui(Child);

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes a directory tree on drop.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The body of `GET http://ADDR/PATH` (HTTP/1.1, closed after the answer).
fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    body.to_string()
}

/// Headless Chromium on `url` with `flags` and a profile in `profile`; its stdout. Run as root, so without its
/// sandbox; the virtual time budget lets the page's first polls finish before the DOM is dumped.
fn chromium(profile: &std::path::Path, url: &str, flags: &[&str]) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(flags)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("chromium (scripts/deps.sh installs it)");
    assert!(out.status.success(), "chromium: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn the_page_shows_the_pods_and_a_flow_with_its_trace() {
    if !root() {
        return;
    }
    let lab = Lab::up(2, "vxlan", APP);
    lab.ready_pods();
    let svc = lab.get_json(&["svc", "nginx"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let url = format!("http://{cluster_ip}/");
    lab.wait(20, "the Service", || lab.reaches("allowed", &url, "1s").then_some(()));

    let mut child = lab
        .cmd(&["ui", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ui = Ui(child);
    let page = first
        .trim()
        .strip_prefix("weft ui: ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    let addr = page.trim_start_matches("http://").trim_end_matches('/').to_string();

    // The server has read the cluster and the agents' flows: the connection through the Service is there.
    let flow = lab.wait(20, "a TRANSLATED flow in /api/state", || {
        let state: Value = serde_json::from_str(&get(&addr, "/api/state")).unwrap();
        state["flows"]
            .as_array()?
            .iter()
            .rev()
            .find(|f| {
                f["verdict"] == "TRANSLATED" && f["source"]["name"] == "allowed" && f["service"]["name"] == "nginx"
            })
            .cloned()
    });
    assert_eq!(flow["destination"]["name"], "nginx", "{flow}");

    // The page draws them: pods by name, the Service, the policy and the flow in the table.
    let profile = std::env::temp_dir().join(format!("weft-{}-chromium", lab.name));
    let _profile = RemoveDir(profile.clone());
    let dom = chromium(&profile, &page, &["--dump-dom"]);
    for pod in ["default/nginx", "default/allowed", "default/other"] {
        assert!(dom.contains(&format!("data-pod=\"{pod}\"")), "{pod} not drawn:\n{dom}");
    }
    assert!(dom.contains("svc default/nginx"), "{dom}");
    assert!(dom.contains("default/access-nginx"), "{dom}");
    assert!(
        dom.contains("class=\"flow\" data-verdict=\"TRANSLATED\""),
        "no flow row:\n{dom}"
    );
    assert!(dom.contains("class=\"edge TRANSLATED\""), "no flow edge:\n{dom}");

    // A picture, as a user sees it.
    let shot = std::env::temp_dir().join(format!("weft-{}-ui.png", lab.name));
    let _remove = Remove(shot.clone());
    chromium(
        &profile,
        &page,
        &[&format!("--screenshot={}", shot.display()), "--window-size=1400,700"],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG: {} bytes", png.len());

    // Clicking the flow asks for `weft trace SOURCE SERVICE-IP:PORT/TCP`.
    let source = flow["source"]["ip"].as_str().unwrap();
    let trace: Value = serde_json::from_str(&get(
        &addr,
        &format!("/api/trace?source={source}&destination={cluster_ip}%3A80%2FTCP"),
    ))
    .unwrap();
    assert_eq!(trace["service"]["name"], "default/nginx", "{trace}");
    assert_eq!(trace["reaches"], true, "{trace}");
    let said = trace["text"].as_str().unwrap();
    assert!(said.contains("ALLOWED: to pod default/nginx"), "{said}");
    assert!(said.contains("allowed by"), "the rule that allows it: {said}");
    // The same words as the CLI's.
    let cli = lab.weft(&["trace", source, &format!("{cluster_ip}:80/TCP")]);
    assert_eq!(said.trim(), text(&cli.stdout).trim());
}
