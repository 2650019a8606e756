//! kube-rs against the lab across a supervisor SIGKILL: a watcher follows ConfigMaps while a writer creates and
//! updates them; the supervisor is killed mid-stream and `weft lab up` resumes the lab. The watch either resumes
//! from its resourceVersion or gets `410 Gone` and relists (both legal); either way every acknowledged write is
//! seen (a relist may only skip versions it delivers a newer version of), no version is delivered twice by the
//! watch, and the reflector's final state equals a fresh list.

mod lab;

use futures::StreamExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector};
use lab::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use weft_lab::spec::Paths;
use weft_model::k8s_openapi::api::core::v1::ConfigMap;

/// ConfigMaps written over and over, so that most writes are updates.
const NAMES: usize = 10;

/// What the watcher saw: versions delivered by watch events and by (re)lists, and how many lists there were.
#[derive(Default)]
struct Seen {
    applied: Vec<(String, u64)>,
    listed: Vec<(String, u64)>,
    lists: usize,
    /// Whether the latest list is complete.
    synced: bool,
}

/// The label of the ConfigMaps the test writes and watches.
const LABEL: &str = "weft-test=resume";

fn version(cm: &ConfigMap) -> (String, u64) {
    let name = cm.metadata.name.clone().unwrap_or_default();
    let rv = cm
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (name, rv)
}

#[test]
fn watches_resume_after_a_supervisor_sigkill_with_no_event_lost_or_duplicated() {
    if !root() {
        return;
    }
    let lab = Lab::up(1, "host-gw", "");
    let kubeconfig = Paths::new(&lab.name).kubeconfig();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        let file = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    });
    let api: Api<ConfigMap> = Api::namespaced(client, "default");

    // The watcher, with a reflector's store of what it has seen.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (reader, writer) = reflector::store::<ConfigMap>();
    {
        let seen = seen.clone();
        // Only the test's own ConfigMaps (the lab publishes kube-root-ca.crt in every namespace too).
        let stream = watcher::watcher(api.clone(), watcher::Config::default().labels(LABEL))
            .default_backoff()
            .reflect(writer);
        runtime.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let mut seen = seen.lock().unwrap();
                match event {
                    Ok(Event::Init) => {
                        seen.lists += 1;
                        seen.synced = false;
                    }
                    Ok(Event::InitApply(cm)) => seen.listed.push(version(&cm)),
                    Ok(Event::InitDone) => seen.synced = true,
                    Ok(Event::Apply(cm)) => seen.applied.push(version(&cm)),
                    Ok(Event::Delete(_)) => {}
                    // The API gone while the supervisor is down: the watcher retries after its back-off.
                    Err(e) => eprintln!("watcher: {e}"),
                }
            }
        });
    }
    lab.wait(30, "the first list", || seen.lock().unwrap().synced.then_some(()));

    // The writer: every write whose answer came back is acknowledged, with the version it made.
    let acked = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (api, acked, stop) = (api.clone(), acked.clone(), stop.clone());
        runtime.spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Acquire) {
                let name = format!("resume-{}", i % NAMES);
                let mut cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "labels": {"weft-test": "resume"}}, "data": {"n": i.to_string()},
                }))
                .unwrap();
                let written = if i < NAMES {
                    api.create(&PostParams::default(), &cm).await
                } else {
                    // An update without a precondition: the latest version, whatever it is.
                    cm.metadata.resource_version = None;
                    api.replace(&name, &PostParams::default(), &cm).await
                };
                match written {
                    Ok(cm) => {
                        acked.lock().unwrap().push(version(&cm));
                        i += 1;
                    }
                    // Refused while the supervisor is down; the same write again, a moment later.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                }
            }
        })
    };
    let acks = || acked.lock().unwrap().len();
    lab.wait(60, "writes before the kill", || (acks() >= 40).then_some(()));

    let pid = supervisor_pid(&lab.name);
    // SAFETY: kill(2) on the lab's own supervisor.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    lab.wait(10, "the supervisor gone", || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .is_empty()
            .then_some(())
    });
    let before = acks();
    lab.ok(&["lab", "up", "--nodes", "1"]);
    lab.wait(60, "writes after resuming", || (acks() >= before + 40).then_some(()));
    stop.store(true, Ordering::Release);
    runtime.block_on(writing).unwrap();
    let acked = acked.lock().unwrap().clone();

    // The watcher catches up with the last acknowledged version of every name.
    let last: BTreeMap<String, u64> = acked.iter().cloned().collect();
    let reflected = || -> BTreeMap<String, u64> { reader.state().iter().map(|cm| version(cm)).collect() };
    lab.wait(60, "the watcher caught up", || (reflected() == last).then_some(()));

    let seen = seen.lock().unwrap();
    eprintln!(
        "{} writes acknowledged ({before} before the kill); the watcher saw {} watch events and {} list(s) ({})",
        acked.len(),
        seen.applied.len(),
        seen.lists,
        if seen.lists > 1 {
            "410 Gone, relisted"
        } else {
            "resumed from its resourceVersion"
        }
    );
    let mut delivered = BTreeSet::new();
    for v in &seen.applied {
        assert!(delivered.insert(v.clone()), "{v:?} delivered twice by the watch");
    }
    for (name, rv) in &acked {
        let version = (name.clone(), *rv);
        let watched = delivered.contains(&version) || seen.listed.contains(&version);
        // A relist after 410 delivers only the newest version of each object: a version it skipped, it delivered
        // a newer one of (the list was taken after that version was superseded).
        let superseded = seen.listed.iter().any(|(n, v)| n == name && v > rv);
        assert!(watched || superseded, "acknowledged write {name}@{rv} never seen");
    }
    let fresh: BTreeMap<String, u64> = runtime
        .block_on(api.list(&ListParams::default().labels(LABEL)))
        .unwrap()
        .items
        .iter()
        .map(version)
        .collect();
    assert_eq!(reflected(), fresh, "the reflector's state is a fresh list's");
    drop(seen);
    runtime.shutdown_background();
    lab.down();
}

fn supervisor_pid(lab: &str) -> i32 {
    std::fs::read_to_string(format!("/run/weft/labs/{lab}/supervisor.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
