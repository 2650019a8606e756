//! Let's Encrypt's ACME test server, Debian's `pebble`, set up for a test or a lab: a CA of our own for its
//! HTTPS directory (the `caBundle` clients need), its config, and `pebble-challtestsrv` as the DNS server it asks,
//! answering every name with one address, so that HTTP-01 validation reaches whatever serves that address.
//! The caller runs the two commands ([`Pebble::server_argv`], [`Pebble::dns_argv`]) where it wants them (a
//! namespace, a lab's external host) and stops them.

use crate::error::{Error, Result};
use crate::transport::{self, Trust};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The environment pebble runs with: validate at once instead of after a random 0-15 s, and never reject a
/// nonce on purpose (pebble's default 5 % tests clients' retries, which instant-acme has).
pub const SERVER_ENV: &[(&str, &str)] = &[("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0")];

/// Where pebble and its DNS listen, and what they answer.
#[derive(Debug, Clone)]
pub struct Pebble {
    /// Holds the CA, pebble's certificate and key, and its config.
    pub dir: PathBuf,
    /// The ACME directory's HTTPS address (`https://ADDR/dir`).
    pub listen: SocketAddr,
    /// The management interface (issuing roots at `/roots/0`).
    pub management: SocketAddr,
    /// The port HTTP-01 validation connects to on the address a name resolves to (80 for a real ingress).
    pub http_port: u16,
    /// Where pebble-challtestsrv serves DNS (UDP and TCP).
    pub dns: SocketAddr,
    /// pebble-challtestsrv's management API (`/set-default-ipv4` changes the answer).
    pub dns_management: SocketAddr,
    /// What every A query is answered with.
    pub answer: IpAddr,
    /// External account binding keys (key ID, HMAC key); when any, pebble requires binding.
    pub eab: Vec<(String, Vec<u8>)>,
}

impl Pebble {
    /// The CA the directory's certificate is signed by: an ACME Issuer's `caBundle`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    /// Writes the CA, the directory's certificate (for the listen address) and pebble's config into `dir`.
    pub fn write_files(&self) -> Result<()> {
        let io = |e: std::io::Error| Error::InvalidConfig {
            what: "pebble's directory",
            detail: e.to_string(),
        };
        let tls = |e: rcgen::Error| Error::Client(format!("making pebble's certificate: {e}"));
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let ca_key = KeyPair::generate().map_err(tls)?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(DnType::CommonName, "weft pebble directory CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).map_err(tls)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = KeyPair::generate().map_err(tls)?;
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name.push(DnType::CommonName, "pebble");
        leaf.subject_alt_names = vec![
            SanType::IpAddress(self.listen.ip()),
            SanType::IpAddress(self.management.ip()),
        ];
        let cert = leaf.signed_by(&key, &issuer).map_err(tls)?;
        let write = |name: &str, text: String| std::fs::write(self.dir.join(name), text).map_err(io);
        write("ca.pem", ca_cert.pem())?;
        write("cert.pem", cert.pem())?;
        write("key.pem", key.serialize_pem())?;
        let keys: serde_json::Map<String, serde_json::Value> = self
            .eab
            .iter()
            .map(|(id, key)| (id.clone(), base64url(key).into()))
            .collect();
        let config = serde_json::json!({"pebble": {
            "listenAddress": self.listen.to_string(),
            "managementListenAddress": self.management.to_string(),
            "certificate": path(&self.dir.join("cert.pem")),
            "privateKey": path(&self.dir.join("key.pem")),
            "httpPort": self.http_port,
            "tlsPort": 5001,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": !self.eab.is_empty(),
            "externalAccountMACKeys": keys,
        }});
        write("config.json", config.to_string())
    }

    /// `pebble` with this config, asking our DNS; run it with [`SERVER_ENV`].
    pub fn server_argv(&self) -> Vec<String> {
        let config = path(&self.dir.join("config.json"));
        ["pebble", "-config", &config, "-dnsserver", &self.dns.to_string()]
            .map(String::from)
            .to_vec()
    }

    /// `pebble-challtestsrv` as a DNS server only (its own challenge responders off).
    pub fn dns_argv(&self) -> Vec<String> {
        let (dns, management, answer) = (
            self.dns.to_string(),
            self.dns_management.to_string(),
            self.answer.to_string(),
        );
        let mut argv = vec!["pebble-challtestsrv", "-dns01", &dns, "-management", &management];
        argv.extend(["-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv6", ""]);
        argv.extend(["-defaultIPv4", &answer]);
        argv.into_iter().map(String::from).collect()
    }

    /// The root pebble issues under (it makes a new one at every start), as PEM: what clients of the issued
    /// certificates trust.
    pub async fn root_pem(&self) -> Result<String> {
        let ca = std::fs::read(self.ca_file()).map_err(|e| Error::InvalidConfig {
            what: "pebble's CA",
            detail: e.to_string(),
        })?;
        let client = transport::client(&Trust::Bundle(ca), transport::REQUEST_TIMEOUT)?;
        let url = format!("https://{}/roots/0", self.management);
        let request = transport::get(&url)?;
        let mut response = client.request(request).await?;
        if !response.parts.status.is_success() {
            return Err(Error::Client(format!("{url}: {}", response.parts.status)));
        }
        let body = response
            .body
            .into_bytes()
            .await
            .map_err(|e| Error::Client(e.to_string()))?;
        String::from_utf8(body.to_vec()).map_err(|e| Error::Client(format!("{url}: {e}")))
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// pebble reads EAB keys base64url-encoded without padding, as CAs hand them out.
fn base64url(key: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}
