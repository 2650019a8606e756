//! A lab's own certificate authority and the certificates its API server needs, kept as PEM files in a directory
//! the lab gives, the way kubeadm keeps `/etc/kubernetes/pki`: the CA survives a restart (so kubeconfigs written
//! earlier stay valid), leaves are reissued when they no longer fit (other addresses, another CA, near expiry).
//!
//! Authentication is Kubernetes' x509 scheme: a client certificate signed by the lab CA names the user in its CN
//! and the groups in its O entries.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::atomic_write;

/// The user kubectl acts as, with the group RBAC lets do anything (as kubeadm's admin.conf).
pub const ADMIN_USER: &str = "kubernetes-admin";
pub const MASTERS_GROUP: &str = "system:masters";
/// Added to every authenticated user, as Kubernetes' authenticator does.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// A leaf this close to expiry is reissued on load, so a lab started now runs with a valid certificate for weeks.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Certificates start being valid a little in the past, so a node whose clock lags still accepts them.
const BACKDATE: Duration = Duration::from_secs(3600);

const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{present} exists without {missing}: restore it, or remove both to make a new CA (which invalidates every kubeconfig written for this lab)"
    )]
    IncompleteCa { present: PathBuf, missing: PathBuf },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The names the API server's certificate is valid for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerNames {
    pub ips: Vec<IpAddr>,
    pub dns: Vec<String>,
}

impl ServerNames {
    /// What a lab's API server is reached as: loopback and `localhost` (kubectl on the host), the control-plane
    /// address (node agents), and the `kubernetes` Service's ClusterIP and DNS names (pods).
    pub fn for_lab(control_plane: IpAddr, service_ip: IpAddr, cluster_domain: &str) -> ServerNames {
        let dns = ["kubernetes", "kubernetes.default", "kubernetes.default.svc"]
            .into_iter()
            .map(String::from)
            .chain([
                format!("kubernetes.default.svc.{cluster_domain}"),
                "localhost".to_string(),
            ])
            .collect();
        ServerNames {
            ips: vec![IpAddr::from([127, 0, 0, 1]), control_plane, service_ip],
            dns,
        }
    }

    fn sans(&self) -> Result<Vec<SanType>, rcgen::Error> {
        let ips = self.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip)));
        let dns = self
            .dns
            .iter()
            .map(|name| Ok(SanType::DnsName(name.clone().try_into()?)));
        ips.chain(dns).collect()
    }

    /// Whether `cert` carries exactly these names (in any order).
    fn matches(&self, cert: &X509Certificate) -> bool {
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return false;
        };
        let mut ips = BTreeSet::new();
        let mut dns = BTreeSet::new();
        for name in &san.value.general_names {
            match name {
                GeneralName::IPAddress(bytes) => match <[u8; 4]>::try_from(*bytes) {
                    Ok(v4) => ips.insert(IpAddr::from(v4)),
                    Err(_) => match <[u8; 16]>::try_from(*bytes) {
                        Ok(v6) => ips.insert(IpAddr::from(v6)),
                        Err(_) => return false,
                    },
                },
                GeneralName::DNSName(name) => dns.insert(name.to_string()),
                _ => return false,
            };
        }
        ips == self.ips.iter().copied().collect() && dns == self.dns.iter().cloned().collect()
    }
}

/// A certificate and its private key, PEM-encoded (what a kubeconfig or a node agent is given).
#[derive(Clone)]
pub struct Credential {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Without the key, so a credential logged by mistake gives nothing away.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Who the caller is (Kubernetes' `user.Info`): from a verified client certificate, a service-account token,
/// or impersonation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    /// Empty when not known (client certificates carry none).
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// The lab's CA, its API server's TLS configuration and the admin's client credential.
pub struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    admin: Credential,
    server_config: Arc<ServerConfig>,
}

/// Keys stay out of debug output.
impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the PKI in `dir` (creating the directory, mode 0700), making whatever is missing or no longer fits:
    /// the CA (CN `weft-<lab>-ca`) only when neither `ca.crt` nor `ca.key` exists; `apiserver.crt` when its names
    /// differ from `names`; any leaf not signed by the CA or expiring within 30 days.
    pub fn load_or_create(dir: &Path, lab: &str, names: &ServerNames) -> Result<Pki, PkiError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| PkiError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        let (ca_pem, issuer) = load_or_create_ca(dir, lab)?;
        let ca_der = parse_pem_cert(&dir.join("ca.crt"), &ca_pem)?;
        let ca = parse_cert(&dir.join("ca.crt"), &ca_der)?;

        let server = load_or_create_leaf(
            dir,
            "apiserver",
            &ca,
            &issuer,
            |cert| names.matches(cert),
            || {
                let mut params = leaf_params("kube-apiserver", &[], ExtendedKeyUsagePurpose::ServerAuth)?;
                params.subject_alt_names = names.sans()?;
                Ok(params)
            },
        )?;
        let admin = load_or_create_leaf(
            dir,
            "admin",
            &ca,
            &issuer,
            |_| true,
            || leaf_params(ADMIN_USER, &[MASTERS_GROUP], ExtendedKeyUsagePurpose::ClientAuth),
        )?;

        let server_config = server_config(ca_der.clone(), &server, &dir.join("apiserver.crt"))?;
        Ok(Pki {
            ca_pem,
            issuer,
            admin,
            server_config,
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The `kubernetes-admin` (group `system:masters`) credential, as persisted in `admin.crt`/`admin.key`.
    pub fn admin(&self) -> &Credential {
        &self.admin
    }

    /// A fresh client credential for `user` in `groups`, e.g. a node agent's `system:node:NAME` in
    /// `system:nodes`. Not persisted: callers that need it across restarts keep it themselves.
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<Credential, PkiError> {
        issue(
            leaf_params(user, groups, ExtendedKeyUsagePurpose::ClientAuth)?,
            &self.issuer,
        )
    }

    /// TLS for the API server: its certificate, ALPN `h2` then `http/1.1`, and client certificates verified
    /// against the lab CA but optional, so a request without credentials reaches the server (and gets a 401
    /// Status) instead of failing the handshake.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.server_config)
    }
}

/// The key service-account tokens are signed with: `sa.key` in `dir` (ECDSA P-256, PKCS#8 PEM, as kubeadm keeps
/// it next to the CA), made when missing. Returns its PKCS#8 DER.
pub fn service_account_key(dir: &Path) -> Result<Vec<u8>, PkiError> {
    let path = dir.join("sa.key");
    let key = match read_optional(&path)? {
        Some(pem) => KeyPair::from_pem(&pem).map_err(|e| PkiError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?,
        None => {
            let key = KeyPair::generate()?;
            store(&path, &key.serialize_pem(), KEY_MODE)?;
            key
        }
    };
    Ok(key.serialized_der().to_vec())
}

/// The user a client certificate names: CN is the user, each O a group, plus `system:authenticated`. Only
/// meaningful for a chain the TLS layer verified against the lab CA; `None` without a certificate or a CN.
pub fn identity(peer: &[CertificateDer]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(peer.first()?).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?;
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(String::from)
        .chain([AUTHENTICATED_GROUP.to_string()])
        .collect();
    Some(UserInfo {
        name: name.to_string(),
        groups,
        ..UserInfo::default()
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn server_config(
    ca_der: CertificateDer<'static>,
    server: &Credential,
    path: &Path,
) -> Result<Arc<ServerConfig>, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()?;
    let chain = vec![parse_pem_cert(path, &server.cert_pem)?];
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).map_err(|e| PkiError::Invalid {
        path: path.with_extension("key"),
        reason: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn load_or_create_ca(dir: &Path, lab: &str) -> Result<(String, Issuer<'static, KeyPair>), PkiError> {
    let (crt_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    match (read_optional(&crt_path)?, read_optional(&key_path)?) {
        (Some(cert_pem), Some(key_pem)) => {
            let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Invalid {
                path: key_path.clone(),
                reason: e.to_string(),
            })?;
            let der = parse_pem_cert(&crt_path, &cert_pem)?;
            if !same_key(&parse_cert(&crt_path, &der)?, &key) {
                return Err(PkiError::Invalid {
                    path: key_path,
                    reason: "not the key of ca.crt".into(),
                });
            }
            let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|e| PkiError::Invalid {
                path: crt_path,
                reason: e.to_string(),
            })?;
            Ok((cert_pem, issuer))
        }
        (None, None) => {
            let mut params = CertificateParams::default();
            params.distinguished_name = common_name(&format!("weft-{lab}-ca"));
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            set_validity(&mut params, CA_LIFETIME);
            let key = KeyPair::generate()?;
            let cert_pem = params.self_signed(&key)?.pem();
            store(&key_path, &key.serialize_pem(), KEY_MODE)?;
            store(&crt_path, &cert_pem, CERT_MODE)?;
            Ok((cert_pem, Issuer::new(params, key)))
        }
        (Some(_), None) => Err(PkiError::IncompleteCa {
            present: crt_path,
            missing: key_path,
        }),
        (None, Some(_)) => Err(PkiError::IncompleteCa {
            present: key_path,
            missing: crt_path,
        }),
    }
}

/// Reuses `<name>.crt`/`<name>.key` when both parse, belong together, were signed by `ca`, are valid for a while
/// yet and pass `fits`; otherwise issues a new pair from `params` and stores it.
fn load_or_create_leaf(
    dir: &Path,
    name: &str,
    ca: &X509Certificate,
    issuer: &Issuer<'static, KeyPair>,
    fits: impl Fn(&X509Certificate) -> bool,
    params: impl FnOnce() -> Result<CertificateParams, PkiError>,
) -> Result<Credential, PkiError> {
    let (crt_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    if let (Some(cert_pem), Some(key_pem)) = (read_optional(&crt_path)?, read_optional(&key_path)?) {
        let credential = Credential { cert_pem, key_pem };
        if reusable(&credential, ca, fits) {
            return Ok(credential);
        }
    }
    let credential = issue(params()?, issuer)?;
    store(&key_path, &credential.key_pem, KEY_MODE)?;
    store(&crt_path, &credential.cert_pem, CERT_MODE)?;
    Ok(credential)
}

/// Whether a stored leaf parses, its key is its own, `ca` signed it, it outlives the renewal margin and `fits`.
fn reusable(credential: &Credential, ca: &X509Certificate, fits: impl Fn(&X509Certificate) -> bool) -> bool {
    let Ok(key) = KeyPair::from_pem(&credential.key_pem) else {
        return false;
    };
    let Ok(der) = CertificateDer::from_pem_slice(credential.cert_pem.as_bytes()) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    let renew_at = unix_time(SystemTime::now() + RENEW_BEFORE);
    same_key(&cert, &key)
        && cert.verify_signature(Some(ca.public_key())).is_ok()
        && cert.validity().not_after.timestamp() > renew_at
        && fits(&cert)
}

fn leaf_params(cn: &str, orgs: &[&str], usage: ExtendedKeyUsagePurpose) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(cn);
    for org in orgs {
        params.distinguished_name.push(DnType::OrganizationName, *org);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, LEAF_LIFETIME);
    Ok(params)
}

fn issue(params: CertificateParams, issuer: &Issuer<'static, KeyPair>) -> Result<Credential, PkiError> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok(Credential {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + lifetime).into();
}

fn same_key(cert: &X509Certificate, key: &KeyPair) -> bool {
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

fn unix_time(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn parse_pem_cert(path: &Path, pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn parse_cert<'a>(path: &Path, der: &'a CertificateDer) -> Result<X509Certificate<'a>, PkiError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn store(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    atomic_write::write(path, contents.as_bytes(), mode, None).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}
