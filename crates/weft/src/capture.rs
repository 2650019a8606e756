//! `weft lab capture NODE|POD|wire|external [-i IF] [-w FILE] [-c N] [FILTER]`: packets of one lab namespace as
//! pcap (Ethernet link type), which tshark, Wireshark and tcpdump read. An AF_PACKET socket made inside the
//! target's network namespace; pcap-file writes the format. Live to stdout (`| tshark -r -`) or to a file.

use crate::client::Api;
use anyhow::{Context, Result, bail};
use pcap_file::pcap::{PcapPacket, PcapWriter};
use std::ffi::CString;
use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use weft_lab::spec::Paths;

#[derive(clap::Args)]
pub struct Args {
    /// `node-N`, a pod (NAME or NAMESPACE/NAME), `wire` (the switch between the nodes) or `external`.
    target: String,
    /// The interface [default: eth0; on the wire, every port of the switch, each frame once].
    #[arg(short, long)]
    interface: Option<String>,
    /// Write to FILE instead of stdout.
    #[arg(short, long)]
    write: Option<PathBuf>,
    /// Stop after COUNT packets.
    #[arg(short, long)]
    count: Option<u64>,
    /// Which packets (outer headers, tcpdump's words): `tcp`, `udp`, `icmp`, `arp`, `host IP`, `port N`,
    /// joined by `and`.
    filter: Vec<String>,
}

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;

pub fn run(paths: &Paths, args: Args) -> Result<i32> {
    let filter = Filter::parse(&args.filter)?;
    let (netns, default_all) = target_netns(paths, &args.target)?;
    let interface = match (&args.interface, default_all) {
        (Some(i), _) if i == "any" => None,
        (Some(i), _) => Some(i.clone()),
        (None, true) => None,
        (None, false) => Some("eth0".to_string()),
    };
    // Every port of the switch sees a frame twice (in on one, out on another): keep it as it comes in.
    let incoming_only = interface.is_none();
    let ns = weft_netlink::Netns::open(&format!("/run/netns/{netns}"))?;
    let socket = ns
        .run(|| Ok(packet_socket(interface.as_deref())))?
        .with_context(|| format!("capturing in {netns}"))?;
    // Unbuffered (a File, stdout's descriptor included): a live reader sees each packet as it comes, and an
    // interrupted capture loses nothing.
    let out = match &args.write {
        Some(file) => std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?,
        None if std::io::stdout().is_terminal() => {
            bail!("pcap is binary: write it to a file (-w FILE) or pipe it (| tshark -r -)")
        }
        None => std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?),
    };
    let mut writer = PcapWriter::new(out).context("writing the pcap header")?;
    let mut buf = vec![0u8; 65536];
    let mut written = 0;
    while args.count.is_none_or(|c| written < c) {
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buf and from are valid for the lengths given.
        let n = unsafe {
            libc::recvfrom(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&raw mut from).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("receiving packets");
        }
        if incoming_only && from.sll_pkttype == PACKET_OUTGOING {
            continue;
        }
        let orig = n as usize;
        let data = &buf[..orig.min(buf.len())];
        if !filter.matches(data) {
            continue;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        writer
            .write_packet(&PcapPacket::new(now, orig as u32, data))
            .context("writing a packet")?;
        written += 1;
    }
    Ok(0)
}

/// The namespace of `target`, and whether it captures on every interface by default (the wire).
fn target_netns(paths: &Paths, target: &str) -> Result<(String, bool)> {
    let spec = paths.read_spec()?;
    if target == "wire" {
        return Ok((paths.wire_netns(), true));
    }
    if target == "external" {
        return Ok((paths.external_netns(), false));
    }
    if spec.node_plans().iter().any(|n| n.name == target) {
        return Ok((paths.node_netns(target), false));
    }
    let (namespace, name) = target.split_once('/').unwrap_or(("default", target));
    let api = Api::connect(paths)?;
    let pod = api
        .get(
            &format!("/api/v1/namespaces/{namespace}/pods/{name}"),
            "application/json",
        )
        .with_context(|| format!("{target:?} is no node, pod, `wire` or `external` of lab {}", spec.name))?;
    if pod["spec"]["hostNetwork"] == true {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        return Ok((paths.node_netns(node), false));
    }
    let uid = pod["metadata"]["uid"].as_str().context("the pod has no uid")?;
    Ok((paths.pod_netns(uid), false))
}

/// An AF_PACKET socket in the calling thread's namespace, on `interface` (None: every interface).
fn packet_socket(interface: Option<&str>) -> Result<OwnedFd> {
    let protocol = ETH_P_ALL.to_be();
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(protocol),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("opening a packet socket (root needed)");
    }
    // SAFETY: fd is a new descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(name) = interface {
        let c = CString::new(name)?;
        // SAFETY: a valid C string.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if index == 0 {
            bail!("no interface {name:?} there");
        }
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = index as i32;
        // SAFETY: addr is a valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("binding to {name}"));
        }
    }
    Ok(socket)
}

/// tcpdump's simplest words, all of which must match the outer headers.
#[derive(Debug, Default, PartialEq)]
struct Filter {
    protocol: Option<Proto>,
    hosts: Vec<Ipv4Addr>,
    ports: Vec<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proto {
    Tcp,
    Udp,
    Icmp,
    Arp,
}

impl Filter {
    fn parse(words: &[String]) -> Result<Filter> {
        let words: Vec<&str> = words.iter().flat_map(|w| w.split_whitespace()).collect();
        let mut f = Filter::default();
        let mut i = 0;
        while i < words.len() {
            let word = words[i];
            let value = || {
                words
                    .get(i + 1)
                    .copied()
                    .with_context(|| format!("{word:?} needs a value"))
            };
            match word {
                "and" | "&&" => {}
                "tcp" => f.protocol = Some(Proto::Tcp),
                "udp" => f.protocol = Some(Proto::Udp),
                "icmp" => f.protocol = Some(Proto::Icmp),
                "arp" => f.protocol = Some(Proto::Arp),
                "host" => {
                    f.hosts
                        .push(value()?.parse().with_context(|| format!("host {:?}", value().ok()))?);
                    i += 1;
                }
                "port" => {
                    f.ports
                        .push(value()?.parse().with_context(|| format!("port {:?}", value().ok()))?);
                    i += 1;
                }
                _ => bail!("filter word {word:?}: only tcp, udp, icmp, arp, host IP, port N and `and` are understood"),
            }
            i += 1;
        }
        Ok(f)
    }

    fn matches(&self, frame: &[u8]) -> bool {
        if *self == Filter::default() {
            return true;
        }
        let Some(ethertype) = frame.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]])) else {
            return false;
        };
        if ethertype == 0x0806 {
            return self.protocol == Some(Proto::Arp) && self.hosts.is_empty() && self.ports.is_empty();
        }
        if ethertype != 0x0800 || self.protocol == Some(Proto::Arp) {
            return false;
        }
        let Some((protocol, t)) = weft_netlink::flow_events::ip_header(&frame[14..]) else {
            return false;
        };
        let proto_ok = match self.protocol {
            None => true,
            Some(Proto::Tcp) => protocol == 6,
            Some(Proto::Udp) => protocol == 17,
            Some(Proto::Icmp) => protocol == 1,
            Some(Proto::Arp) => false,
        };
        proto_ok
            && self.hosts.iter().all(|h| t.src == *h || t.dst == *h)
            && self.ports.iter().all(|p| t.sport == *p || t.dport == *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(proto: u8, dport: u16) -> Vec<u8> {
        let mut f = vec![0; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, proto, 0, 0, 172, 18, 0, 11, 172, 18, 0, 12,
        ]);
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn filters_on_outer_headers() {
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let vxlan = Filter::parse(&words("udp and port 4789")).unwrap();
        assert!(vxlan.matches(&frame(17, 4789)));
        assert!(!vxlan.matches(&frame(6, 4789)));
        assert!(!vxlan.matches(&frame(17, 53)));
        let host = Filter::parse(&words("host 172.18.0.12")).unwrap();
        assert!(host.matches(&frame(6, 80)));
        assert!(
            !Filter::parse(&words("host 172.18.0.13"))
                .unwrap()
                .matches(&frame(6, 80))
        );
        assert!(
            Filter::parse(&[]).unwrap().matches(&[0; 4]),
            "no filter takes everything"
        );
        assert!(Filter::parse(&words("port")).is_err());
        assert!(Filter::parse(&words("src net 10.0.0.0/8")).is_err());
    }
}
