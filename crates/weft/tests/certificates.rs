//! cert-manager's flow against the lab with kubectl, curl and openssl as a user types them: `weft certs` and
//! `weft ingress` installed from deploy/certs.yaml and deploy/ingress.yaml; a SelfSigned issuer signs a root CA,
//! a CA issuer signs with it, and an Ingress annotated with that issuer gets its Certificate (ingress-shim), whose
//! Secret is cert-manager's (type, annotations, chain verified by openssl and by curl through weft ingress); the
//! short-lived certificate renews and the renewed one is served within 1 s with no failed request; a changed tls
//! entry re-issues and a removed one deletes its Certificate; an issuer naming a missing Secret is Ready=False
//! with cert-manager's reason and an event, and writes no Secret, until the Secret exists.

mod lab;

use lab::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const HOST: &str = "hwsw-k8s.leannet.eu";

/// A Secret's data key, decoded.
fn secret_data(lab: &Lab, name: &str, key: &str) -> String {
    use base64::Engine;
    let escaped = key.replace('.', "\\.");
    let b64 = lab.kubectl_ok(&["get", "secret", name, "-o", &format!("jsonpath={{.data.{escaped}}}")]);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// The Ready condition of an object: (status, reason); empty while the object does not exist yet (the
/// ingress-shim creates Certificates some time after their Ingress).
fn ready(lab: &Lab, kind: &str, name: &str) -> (String, String) {
    let get = |field: &str| {
        let path = format!("jsonpath={{.status.conditions[?(@.type==\"Ready\")].{field}}}");
        let out = lab.kubectl(&["get", kind, name, "-o", &path]);
        if out.status.success() {
            text(&out.stdout)
        } else {
            String::new()
        }
    };
    (get("status"), get("reason"))
}

/// The serial number of the certificate weft ingress serves for HOST at `addr` (IP:PORT), from the external host.
fn served_serial(lab: &Lab, addr: &str) -> String {
    let script = format!(
        "openssl s_client -connect {addr} -servername {HOST} </dev/null 2>/dev/null | openssl x509 -noout -serial"
    );
    text(&lab.node_exec("external", &["sh", "-c", &script]).stdout)
        .trim()
        .to_string()
}

/// The serial number of a PEM certificate (the first of a chain), by openssl.
fn serial_of(pem: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(pem.as_bytes()).unwrap();
    text(&child.wait_with_output().unwrap().stdout).trim().to_string()
}

#[test]
fn certificates_from_a_lab_ca_renewed_under_load_and_a_broken_issuer() {
    if !root() {
        return;
    }
    let lab = Lab::up(1, "host-gw", "");
    lab.kubectl_ok(&["apply", "-f", &repo("deploy/certs.yaml")]);
    lab.kubectl_ok(&["apply", "-f", &repo("deploy/ingress.yaml")]);
    lab.kubectl_ok(&["apply", "-f", &example("09-ingress/webserver.yaml")]);

    // SelfSigned root → CA issuer.
    lab.kubectl_ok(&["apply", "-f", &example("10-certificates/issuers.yaml")]);
    lab.wait(60, "the lab CA issuer Ready", || {
        (ready(&lab, "issuer", "lab-ca") == ("True".into(), "KeyPairVerified".into())).then_some(())
    });
    assert_eq!(ready(&lab, "certificate", "lab-root").0, "True");
    assert_eq!(ready(&lab, "issuer", "selfsigned"), ("True".into(), "IsReady".into()));
    let issuers = lab.kubectl_ok(&["get", "issuers"]);
    assert!(
        issuers.starts_with("NAME") && issuers.contains("READY") && issuers.contains("lab-ca"),
        "{issuers}"
    );
    let root = secret_data(&lab, "lab-root", "tls.crt");
    assert_eq!(
        secret_data(&lab, "lab-root", "ca.crt"),
        root,
        "a self-signed certificate is its own CA"
    );

    // The annotated Ingress gets its Certificate, issued by the CA.
    lab.kubectl_ok(&["apply", "-f", &example("10-certificates/ingress-with-issuer.yaml")]);
    lab.wait(60, "the Ingress's Certificate Ready", || {
        (ready(&lab, "certificate", "webserver-tls").0 == "True").then_some(())
    });
    let certificates = lab.kubectl_ok(&["get", "certificates"]);
    assert!(
        certificates.contains("READY") && certificates.contains("SECRET"),
        "{certificates}"
    );
    assert!(certificates.contains("webserver-tls   True"), "{certificates}");
    let owner = lab.kubectl_ok(&[
        "get",
        "certificate",
        "webserver-tls",
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
    ]);
    assert_eq!(owner, "Ingress/webserver-ingress");
    let requests = lab.kubectl_ok(&["get", "certificaterequests"]);
    assert!(
        requests.contains("APPROVED") && requests.contains("ISSUER") && requests.contains("lab-ca"),
        "{requests}"
    );

    // The Secret as cert-manager writes it; its chain verifies against the root.
    let kind = lab.kubectl_ok(&["get", "secret", "webserver-tls", "-o", "jsonpath={.type}"]);
    assert_eq!(kind, "kubernetes.io/tls");
    let annotation = |key: &str| {
        let escaped = key.replace('.', "\\.");
        lab.kubectl_ok(&[
            "get",
            "secret",
            "webserver-tls",
            "-o",
            &format!("jsonpath={{.metadata.annotations.{escaped}}}"),
        ])
    };
    assert_eq!(annotation("cert-manager.io/issuer-name"), "lab-ca");
    assert_eq!(annotation("cert-manager.io/certificate-name"), "webserver-tls");
    assert_eq!(annotation("cert-manager.io/alt-names"), HOST);
    let dir = std::env::temp_dir().join(format!("weft-certs-{}", lab.name));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, secret_data(&lab, "webserver-tls", "ca.crt")).unwrap();
    assert_eq!(secret_data(&lab, "webserver-tls", "ca.crt"), root);
    let chain = secret_data(&lab, "webserver-tls", "tls.crt");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "leaf and CA: {chain}");
    let chain_file = dir.join("tls.crt");
    std::fs::write(&chain_file, &chain).unwrap();
    let verify = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&ca_file)
        .arg(&chain_file)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "openssl verify: {}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );
    assert!(secret_data(&lab, "webserver-tls", "tls.key").starts_with("-----BEGIN EC PRIVATE KEY-----"));

    // curl through weft ingress verifies the chain with the CA alone (no -k).
    for target in ["deployment/weft-ingress -n weft-ingress", "deployment/webserver"] {
        let mut args = vec!["rollout", "status", "--timeout=60s"];
        args.extend(target.split(' '));
        lab.kubectl_ok(&args);
    }
    let https = lab.kubectl_ok(&[
        "get",
        "service",
        "weft-ingress",
        "-n",
        "weft-ingress",
        "-o",
        "jsonpath={.spec.ports[?(@.name==\"https\")].nodePort}",
    ]);
    let node = lab.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[0].status.addresses[0].address}"]);
    let addr = format!("{node}:{https}");
    let resolve = format!("{HOST}:{https}:{node}");
    let url = format!("https://{HOST}:{https}/");
    let ca = ca_file.to_string_lossy().into_owned();
    let curl = |lab: &Lab| {
        let out = lab.node_exec(
            "external",
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--resolve",
                &resolve,
                "--cacert",
                &ca,
                &url,
            ],
        );
        text(&out.stdout)
    };
    lab.wait(30, "curl --cacert through weft ingress", || {
        (curl(&lab) == "200").then_some(())
    });

    // Renewal (24 s certificates renew at two thirds), under load: no request fails, and weft ingress serves the
    // renewed certificate within a second of the Secret changing.
    let revision = |lab: &Lab| {
        lab.kubectl_ok(&[
            "get",
            "certificate",
            "webserver-tls",
            "-o",
            "jsonpath={.status.revision}",
        ])
    };
    let first = revision(&lab);
    // The Secret now (it may have renewed already while the controllers rolled out).
    let old_serial = serial_of(&secret_data(&lab, "webserver-tls", "tls.crt"));
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let code = curl(&lab);
                done.fetch_add(1, Ordering::Relaxed);
                if code != "200" {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed request: {code:?}");
                }
            }
        });
        let new_chain = lab.wait(40, "a renewed certificate in the Secret", || {
            let now = secret_data(&lab, "webserver-tls", "tls.crt");
            (serial_of(&now) != old_serial).then_some(now)
        });
        let changed = Instant::now();
        let new_serial = serial_of(&new_chain);
        // The first TLS handshake that got the renewed certificate: how long after the change it started (each
        // probe takes a few hundred milliseconds itself).
        let swap = lab.wait(10, "weft ingress serving the renewed certificate", || {
            let started = changed.elapsed();
            (served_serial(&lab, &addr) == new_serial).then_some(started)
        });
        // A few more requests on the new certificate.
        let after = done.load(Ordering::Relaxed);
        lab.wait(10, "requests after the renewal", || {
            (done.load(Ordering::Relaxed) >= after + 3).then_some(())
        });
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        swap
    });
    eprintln!(
        "renewed certificate served by a handshake started {:?} after the Secret changed; {} requests, {} failed",
        load,
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert!(
        load <= Duration::from_secs(1),
        "renewed certificate served after {load:?}"
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(revision(&lab).parse::<u32>().unwrap() > first.parse::<u32>().unwrap());
    assert_eq!(ready(&lab, "certificate", "webserver-tls").0, "True");

    // A changed spec is re-issued: a second host on the Ingress's tls entry reaches the Certificate and its Secret.
    let patch = r#"[{"op": "add", "path": "/spec/tls/0/hosts/-", "value": "blue.example"}]"#;
    lab.kubectl_ok(&["patch", "ingress", "webserver-ingress", "--type=json", "-p", patch]);
    lab.wait(30, "the certificate re-issued for both hosts", || {
        annotation("cert-manager.io/alt-names")
            .contains("blue.example")
            .then_some(())
    });
    // The tls entry gone, ingress-shim deletes its Certificate.
    let patch = r#"[{"op": "remove", "path": "/spec/tls"}]"#;
    lab.kubectl_ok(&["patch", "ingress", "webserver-ingress", "--type=json", "-p", patch]);
    lab.wait(30, "the Certificate deleted with its tls entry", || {
        (!lab.kubectl(&["get", "certificate", "webserver-tls"]).status.success()).then_some(())
    });

    // An issuer whose Secret is missing: Ready=False with cert-manager's reason and a Warning event; its
    // Certificate gets no Secret, and the controller keeps running.
    lab.kubectl_ok(&["apply", "-f", &example("10-certificates/broken-issuer.yaml")]);
    lab.wait(30, "the broken issuer Ready=False", || {
        (ready(&lab, "issuer", "broken-ca") == ("False".into(), "ErrGetKeyPair".into())).then_some(())
    });
    lab.wait(30, "a Warning event on the broken issuer", || {
        let events = lab.kubectl_ok(&["get", "events", "--field-selector", "involvedObject.name=broken-ca"]);
        (events.contains("Warning") && events.contains("ErrGetKeyPair")).then_some(())
    });
    lab.wait(30, "the orphan Certificate not Ready", || {
        (ready(&lab, "certificate", "orphan") == ("False".into(), "DoesNotExist".into())).then_some(())
    });
    let orphan = lab.kubectl(&["get", "secret", "orphan-tls"]);
    assert!(
        !orphan.status.success(),
        "no Secret for a Certificate whose issuer cannot sign"
    );
    // Its request (made once the new RSA key is) waits for the issuer.
    lab.wait(30, "the orphan's request Pending", || {
        (ready(&lab, "certificaterequest", "orphan-1").1 == "Pending").then_some(())
    });
    // The Secret created, the issuer recovers at once (it watches the Secret it names) and the waiting request
    // is signed.
    let (root_crt, root_key) = (dir.join("root.crt"), dir.join("root.key"));
    std::fs::write(&root_crt, &root).unwrap();
    std::fs::write(&root_key, secret_data(&lab, "lab-root", "tls.key")).unwrap();
    lab.kubectl_ok(&[
        "create",
        "secret",
        "tls",
        "no-such-secret",
        &format!("--cert={}", root_crt.display()),
        &format!("--key={}", root_key.display()),
    ]);
    lab.wait(30, "the orphan Certificate issued once its issuer recovered", || {
        (ready(&lab, "certificate", "orphan").0 == "True").then_some(())
    });
    assert_eq!(
        ready(&lab, "issuer", "broken-ca"),
        ("True".into(), "KeyPairVerified".into())
    );
    let pods = lab.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "weft-certs",
        "-o",
        "jsonpath={.items[*].status.containerStatuses[0].restartCount}",
    ]);
    assert_eq!(pods, "0", "weft certs never restarted");
    let _ = std::fs::remove_dir_all(&dir);
}
