//! Certificate signing requests from a Certificate's spec, signing them (self-signed or by a CA), and reading
//! certificates back (x509-parser).

use super::Error;
use crate::api::CertificateSpec;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use std::net::IpAddr;
use std::time::Duration;
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

/// cert-manager's usages when a Certificate names none.
pub const DEFAULT_USAGES: [&str; 2] = ["digital signature", "key encipherment"];

/// A PEM CSR for the names and subject of `spec`, signed with `key`.
pub fn request(spec: &CertificateSpec, key: &KeyPair) -> Result<String, Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(cn) = spec.common_name.as_deref().filter(|cn| !cn.is_empty()) {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    if let Some(subject) = &spec.subject {
        for (kind, values) in [
            (DnType::OrganizationName, &subject.organizations),
            (DnType::CountryName, &subject.countries),
            (DnType::OrganizationalUnitName, &subject.organizational_units),
            (DnType::LocalityName, &subject.localities),
            (DnType::StateOrProvinceName, &subject.provinces),
        ] {
            for value in values {
                params.distinguished_name.push(kind.clone(), value.as_str());
            }
        }
    }
    for name in &spec.dns_names {
        params
            .subject_alt_names
            .push(SanType::DnsName(name.as_str().try_into()?));
    }
    for ip in &spec.ip_addresses {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| Error::Request(format!("ipAddresses: {ip:?} is not an IP address")))?;
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    for uri in &spec.uris {
        params.subject_alt_names.push(SanType::URI(uri.as_str().try_into()?));
    }
    for email in &spec.email_addresses {
        params
            .subject_alt_names
            .push(SanType::Rfc822Name(email.as_str().try_into()?));
    }
    if params.subject_alt_names.is_empty() && params.distinguished_name.iter().next().is_none() {
        return Err(Error::Request(
            "at least one of commonName, dnsNames, uris, ipAddresses or emailAddresses must be set".into(),
        ));
    }
    Ok(params.serialize_request(key)?.pem()?)
}

/// What the issuer puts into the certificate beyond the CSR: the CertificateRequest's spec.
pub struct Template<'a> {
    pub duration: Duration,
    pub is_ca: bool,
    pub usages: &'a [String],
}

/// Who signs: the request's own key (SelfSigned) or a CA's certificate and key.
pub enum Signer<'a> {
    SelfSigned(&'a KeyPair),
    Ca { certificate: &'a str, key: &'a KeyPair },
}

/// Signs the PEM CSR `csr` as `template` says; the PEM certificate.
pub fn sign(csr: &str, template: &Template, signer: Signer) -> Result<String, Error> {
    let mut request = CertificateSigningRequestParams::from_pem(csr)
        .map_err(|e| Error::Request(format!("the CSR cannot be read: {e}")))?;
    let params = &mut request.params;
    let now = OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + template.duration;
    let mut serial = [0u8; 20];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|_| Error::Request("no randomness for a serial number".into()))?;
    serial[0] &= 0x7f; // positive, as RFC 5280 wants
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.is_ca = if template.is_ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::NoCa
    };
    let (key_usages, extended) = usages(template.usages, template.is_ca)?;
    params.key_usages = key_usages;
    params.extended_key_usages = extended;
    let certificate = match signer {
        Signer::SelfSigned(key) => {
            if key.public_key_raw() != request.public_key.der_bytes() {
                return Err(Error::Request("the CSR's public key is not the private key's".into()));
            }
            request.params.self_signed(key)?
        }
        Signer::Ca { certificate, key } => {
            request.params.use_authority_key_identifier_extension = true;
            let issuer = Issuer::from_ca_cert_pem(certificate, key)?;
            request.signed_by(&issuer)?
        }
    };
    Ok(certificate.pem())
}

/// Key usages and extended key usages by cert-manager's names; a CA certificate can also sign certificates.
fn usages(names: &[String], is_ca: bool) -> Result<(Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>), Error> {
    let defaults: Vec<String> = DEFAULT_USAGES.iter().map(|u| u.to_string()).collect();
    let names = if names.is_empty() { &defaults[..] } else { names };
    let (mut key, mut extended) = (Vec::new(), Vec::new());
    for name in names {
        match name.as_str() {
            "signing" | "digital signature" => key.push(KeyUsagePurpose::DigitalSignature),
            "content commitment" => key.push(KeyUsagePurpose::ContentCommitment),
            "key encipherment" => key.push(KeyUsagePurpose::KeyEncipherment),
            "data encipherment" => key.push(KeyUsagePurpose::DataEncipherment),
            "key agreement" => key.push(KeyUsagePurpose::KeyAgreement),
            "cert sign" => key.push(KeyUsagePurpose::KeyCertSign),
            "crl sign" => key.push(KeyUsagePurpose::CrlSign),
            "encipher only" => key.push(KeyUsagePurpose::EncipherOnly),
            "decipher only" => key.push(KeyUsagePurpose::DecipherOnly),
            "any" => extended.push(ExtendedKeyUsagePurpose::Any),
            "server auth" => extended.push(ExtendedKeyUsagePurpose::ServerAuth),
            "client auth" => extended.push(ExtendedKeyUsagePurpose::ClientAuth),
            "code signing" => extended.push(ExtendedKeyUsagePurpose::CodeSigning),
            "email protection" | "s/mime" => extended.push(ExtendedKeyUsagePurpose::EmailProtection),
            "timestamping" => extended.push(ExtendedKeyUsagePurpose::TimeStamping),
            "ocsp signing" => extended.push(ExtendedKeyUsagePurpose::OcspSigning),
            other => return Err(Error::Request(format!("unknown usage {other:?}"))),
        }
    }
    if is_ca && !key.contains(&KeyUsagePurpose::KeyCertSign) {
        key.push(KeyUsagePurpose::KeyCertSign);
    }
    Ok((key, extended))
}

/// What the controller checks of an issued certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
    pub is_ca: bool,
    /// The subject public key, as rcgen's `KeyPair::public_key_raw` gives it.
    pub public_key: Vec<u8>,
    /// The issuer's distinguished name, as text.
    pub issuer: String,
    pub self_signed: bool,
}

/// The PEM blocks of a chain, in order.
pub fn chain(text: &str) -> Result<Vec<String>, Error> {
    let blocks = pem::parse_many(text).map_err(|e| Error::Certificate(e.to_string()))?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| super::to_pem(&b))
        .collect())
}

/// Reads the first certificate of a PEM chain.
pub fn inspect(text: &str) -> Result<Info, Error> {
    let block = pem::parse(text).map_err(|e| Error::Certificate(e.to_string()))?;
    if block.tag() != "CERTIFICATE" {
        return Err(Error::Certificate(format!(
            "a PEM block {:?}, not CERTIFICATE",
            block.tag()
        )));
    }
    let (_, cert) = X509Certificate::from_der(block.contents()).map_err(|e| Error::Certificate(e.to_string()))?;
    let mut info = Info {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        uris: Vec::new(),
        emails: Vec::new(),
        is_ca: cert.is_ca(),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        issuer: cert.issuer().to_string(),
        self_signed: cert.issuer() == cert.subject(),
    };
    add_names(&mut info, cert.extensions().iter().map(|e| e.parsed_extension()));
    Ok(info)
}

/// The subject alternative names among `extensions`, into `info`.
fn add_names<'a>(info: &mut Info, extensions: impl Iterator<Item = &'a ParsedExtension<'a>>) {
    for extension in extensions {
        if let ParsedExtension::SubjectAlternativeName(san) = extension {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(n) => info.dns_names.push(n.to_string()),
                    GeneralName::URI(u) => info.uris.push(u.to_string()),
                    GeneralName::RFC822Name(e) => info.emails.push(e.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            info.ip_addresses.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            info.ip_addresses.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// What a PEM CSR asks for: its names and public key (no validity: zero times).
pub fn request_info(csr: &str) -> Result<Info, Error> {
    let block = pem::parse(csr).map_err(|e| Error::Request(e.to_string()))?;
    let (_, request) =
        X509CertificationRequest::from_der(block.contents()).map_err(|e| Error::Request(e.to_string()))?;
    let subject = &request.certification_request_info.subject;
    let mut info = Info {
        not_before: 0,
        not_after: 0,
        common_name: subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        uris: Vec::new(),
        emails: Vec::new(),
        is_ca: false,
        public_key: request
            .certification_request_info
            .subject_pki
            .subject_public_key
            .data
            .to_vec(),
        issuer: String::new(),
        self_signed: false,
    };
    if let Some(extensions) = request.requested_extensions() {
        add_names(&mut info, extensions);
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::IssuerRef;
    use crate::pki::key::{KeySpec, generate};

    fn spec(dns: &[&str]) -> CertificateSpec {
        CertificateSpec {
            common_name: Some("example".into()),
            dns_names: dns.iter().map(|d| d.to_string()).collect(),
            ip_addresses: vec!["10.0.0.1".into()],
            uris: vec!["spiffe://cluster.local/ns/a/sa/b".into()],
            secret_name: "s".into(),
            issuer_ref: IssuerRef {
                name: "i".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn ecdsa() -> KeyPair {
        generate(KeySpec {
            algorithm: crate::api::KeyAlgorithm::ECDSA,
            size: 256,
            encoding: Default::default(),
        })
        .unwrap()
    }

    #[test]
    fn a_ca_signs_a_request_with_the_names_of_the_spec() {
        let ca_key = ecdsa();
        let mut root_spec = spec(&[]);
        root_spec.common_name = Some("root".into());
        let ca_csr = request(&root_spec, &ca_key).unwrap();
        let hour = Duration::from_secs(3600);
        let root = Template {
            duration: hour,
            is_ca: true,
            usages: &[],
        };
        let ca = sign(&ca_csr, &root, Signer::SelfSigned(&ca_key)).unwrap();
        let ca_info = inspect(&ca).unwrap();
        assert!(ca_info.is_ca && ca_info.self_signed);

        let key = ecdsa();
        let csr = request(&spec(&["a.example", "b.example"]), &key).unwrap();
        let leaf = Template {
            duration: hour,
            is_ca: false,
            usages: &[],
        };
        let cert = sign(
            &csr,
            &leaf,
            Signer::Ca {
                certificate: &ca,
                key: &ca_key,
            },
        )
        .unwrap();
        let info = inspect(&cert).unwrap();
        assert_eq!(info.dns_names, ["a.example", "b.example"]);
        assert_eq!(info.ip_addresses, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.uris, ["spiffe://cluster.local/ns/a/sa/b"]);
        assert_eq!(info.common_name.as_deref(), Some("example"));
        assert_eq!(info.public_key, key.public_key_raw());
        assert!(!info.is_ca && !info.self_signed);
        assert_eq!(info.issuer, ca_info.issuer);
        assert_eq!(info.not_after - info.not_before, 3600);
        let asked = request_info(&csr).unwrap();
        assert_eq!(
            (asked.dns_names, asked.public_key),
            (info.dns_names.clone(), info.public_key.clone())
        );
        let both = format!("{cert}{ca}");
        assert_eq!(
            chain(&both).unwrap(),
            [cert, ca],
            "the blocks as they were, LF line ends"
        );
    }

    #[test]
    fn self_signing_needs_the_requests_own_key() {
        let csr = request(&spec(&["a.example"]), &ecdsa()).unwrap();
        let template = Template {
            duration: Duration::from_secs(60),
            is_ca: false,
            usages: &[],
        };
        assert!(matches!(
            sign(&csr, &template, Signer::SelfSigned(&ecdsa())),
            Err(Error::Request(_))
        ));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut empty = spec(&[]);
        empty.common_name = None;
        empty.ip_addresses.clear();
        empty.uris.clear();
        assert!(request(&empty, &ecdsa()).is_err());
        let mut bad_ip = spec(&[]);
        bad_ip.ip_addresses = vec!["nope".into()];
        assert!(request(&bad_ip, &ecdsa()).is_err());
        let template = Template {
            duration: Duration::from_secs(60),
            is_ca: false,
            usages: &["flying".into()],
        };
        assert!(sign("garbage", &template, Signer::SelfSigned(&ecdsa())).is_err());
        assert!(inspect("garbage").is_err());
    }
}
