//! `lab up --acme`: the lab's "internet CA". Debian's pebble runs on the external host, with pebble-challtestsrv
//! as the DNS server it asks, answering every name with one address (the lab's first LoadBalancer address, where
//! the ingress controller's Service is expected), so HTTP-01 validation reaches weft ingress on port 80. The
//! external host's `lab exec` sees that DNS in its /etc/resolv.conf and pebble's roots in its
//! /etc/ssl/certs/ca-certificates.crt, so `curl https://NAME` there verifies pebble's certificates without `-k`.
//! Both processes live in the external host's namespace, so `lab down` kills them with the rest.

use crate::error::{Error, Result, io, kernel};
use crate::sandbox::{Bind, Env, Sandbox};
use crate::spec::{LabSpec, Paths};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use weft_acme::pebble::{Pebble, SERVER_ENV};
use weft_netlink::Netns;

/// The ACME directory's port on the external host (pebble's own default).
pub const DIRECTORY_PORT: u16 = 14000;
/// pebble's management port (`/roots/0`, `/intermediates/0`).
pub const MANAGEMENT_PORT: u16 = 15000;
/// pebble-challtestsrv's management port (`/set-default-ipv4` changes what names resolve to).
pub const DNS_MANAGEMENT_PORT: u16 = 8055;
/// The system bundle the external host's TLS clients (curl, openssl) read.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where the lab keeps pebble's files: the directory CA (`ca.pem`), pebble's issuing roots (`roots.pem`), the
/// external host's trust bundle and resolv.conf, and the two logs.
pub fn dir(paths: &Paths) -> PathBuf {
    paths.dir().join("acme")
}

/// pebble as the lab runs it.
pub fn pebble(paths: &Paths, spec: &LabSpec) -> Pebble {
    let external = IpAddr::V4(spec.external_ip());
    Pebble {
        dir: dir(paths),
        listen: SocketAddr::new(external, DIRECTORY_PORT),
        management: SocketAddr::new(external, MANAGEMENT_PORT),
        http_port: 80,
        dns: SocketAddr::new(external, 53),
        dns_management: SocketAddr::new(external, DNS_MANAGEMENT_PORT),
        answer: IpAddr::V4(first_lb_address(spec)),
        eab: Vec::new(),
    }
}

/// The address every name resolves to: the first of the LoadBalancer pool, which the first LoadBalancer Service
/// gets (or asks for with `spec.loadBalancerIP`).
pub fn first_lb_address(spec: &LabSpec) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(spec.lb_pool.network()) + 1)
}

/// Starts pebble and its DNS on the external host (unless they run already, as in a resumed lab), and writes
/// what the external host trusts and resolves with. Returns pebble's settings.
pub fn start(paths: &Paths, spec: &LabSpec) -> Result<Pebble> {
    let pebble = pebble(paths, spec);
    let netns = Netns::open(&format!("/run/netns/{}", paths.external_netns()))
        .map_err(kernel("opening the external host's namespace"))?;
    if listening(&netns, pebble.listen)? {
        return Ok(pebble);
    }
    let failed = |what: &str| {
        let what = what.to_string();
        move |e: weft_acme::Error| Error::Lab {
            lab: spec.name.clone(),
            msg: format!("{what}: {e}"),
        }
    };
    pebble.write_files().map_err(failed("writing pebble's files"))?;
    spawn(paths, &pebble.dns_argv(), &[], &pebble.dir.join("dns.log"))?;
    spawn(paths, &pebble.server_argv(), SERVER_ENV, &pebble.dir.join("pebble.log"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    for addr in [SocketAddr::new(pebble.dns.ip(), 53), pebble.listen, pebble.management] {
        while !listening(&netns, addr)? {
            if Instant::now() > deadline {
                return Err(Error::Lab {
                    lab: spec.name.clone(),
                    msg: format!("pebble did not listen on {addr} (see {})", pebble.dir.display()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The roots are fetched from the external host, where pebble's management interface listens.
    let roots = netns
        .run(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            Ok(runtime.map(|r| r.block_on(pebble.root_pem())))
        })
        .map_err(kernel("fetching pebble's root on the external host"))?
        .map_err(io("a runtime to fetch pebble's root"))?
        .map_err(failed("fetching pebble's root"))?;
    write_trust(&pebble, &roots)?;
    Ok(pebble)
}

/// The external host's view: a trust bundle of the system's roots, pebble's issuing root and its directory's CA,
/// and a resolv.conf naming pebble's DNS.
fn write_trust(pebble: &Pebble, roots: &str) -> Result<()> {
    let write = |name: &str, text: String| {
        let path = pebble.dir.join(name);
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))
    };
    write("roots.pem", roots.to_string())?;
    let system = std::fs::read_to_string(SYSTEM_BUNDLE).unwrap_or_default();
    let ca = std::fs::read_to_string(pebble.ca_file()).map_err(io("reading pebble's directory CA"))?;
    write("ca-certificates.crt", format!("{system}{roots}{ca}"))?;
    write("resolv.conf", format!("nameserver {}\n", pebble.dns.ip()))
}

/// What `lab exec external` binds over the host's files when the lab runs pebble: none otherwise.
pub fn external_binds(paths: &Paths) -> Vec<Bind> {
    let dir = dir(paths);
    [
        ("ca-certificates.crt", SYSTEM_BUNDLE),
        ("resolv.conf", "/etc/resolv.conf"),
    ]
    .into_iter()
    .map(|(file, target)| Bind {
        source: dir.join(file),
        target: PathBuf::from(target),
        read_only: true,
    })
    .filter(|b| b.source.exists())
    .collect()
}

/// Runs `argv` on the external host in a session of its own (it outlives `lab up`), logging to `log`.
fn spawn(paths: &Paths, argv: &[String], env: &[(&str, &str)], log: &Path) -> Result<()> {
    let sandbox = Sandbox {
        netns: PathBuf::from("/run/netns").join(paths.external_netns()),
        ..Default::default()
    };
    let file = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    sandbox.spawn(argv, Env::Inherit(env), |mut command| {
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(io("pebble's log"))?)
            .stderr(file);
        // SAFETY: setsid(2) only, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()?;
                Ok(())
            });
        }
        command
            .spawn()
            .map_err(io(format!("starting {} on the external host", argv[0])))
    })?;
    Ok(())
}

/// Whether something accepts TCP connections at `addr` in the namespace.
fn listening(netns: &Netns, addr: SocketAddr) -> Result<bool> {
    netns
        .run(|| Ok(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()))
        .map_err(kernel("probing pebble on the external host"))
}
