//! The identifiers an order asks for, read from the CSR it will be finalized with (the server rejects a CSR
//! whose names differ from the order's).

use crate::error::{Error, Result};
use instant_acme::Identifier;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// The CSR's DNS names and IP addresses (subject alternative names), or its common name when it has none.
pub fn identifiers(csr_der: &[u8]) -> Result<Vec<Identifier>> {
    let invalid = |detail: String| Error::InvalidConfig { what: "CSR", detail };
    let (_, csr) = X509CertificationRequest::from_der(csr_der).map_err(|e| invalid(e.to_string()))?;
    let mut out = Vec::new();
    for extension in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = extension else {
            continue;
        };
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(dns) => out.push(Identifier::Dns(dns.to_string())),
                GeneralName::IPAddress(bytes) => out.push(Identifier::Ip(ip(bytes).map_err(invalid)?)),
                _ => {}
            }
        }
    }
    if out.is_empty() {
        let subject = &csr.certification_request_info.subject;
        if let Some(cn) = subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()) {
            out.push(Identifier::Dns(cn.to_string()));
        }
    }
    if out.is_empty() {
        return Err(invalid("no DNS name or IP address to order a certificate for".into()));
    }
    Ok(out)
}

fn ip(bytes: &[u8]) -> Result<std::net::IpAddr, String> {
    match bytes.len() {
        4 => Ok(<[u8; 4]>::try_from(bytes).map_err(|e| e.to_string())?.into()),
        16 => Ok(<[u8; 16]>::try_from(bytes).map_err(|e| e.to_string())?.into()),
        n => Err(format!("an IP address of {n} bytes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(names: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    #[test]
    fn names_and_addresses_become_identifiers() {
        let got = identifiers(&csr(&["blue.example", "10.0.0.1"])).unwrap();
        assert_eq!(
            got,
            vec![
                Identifier::Dns("blue.example".into()),
                Identifier::Ip("10.0.0.1".parse().unwrap())
            ]
        );
    }

    #[test]
    fn garbage_is_invalid_config() {
        assert!(matches!(
            identifiers(b"not a csr"),
            Err(Error::InvalidConfig { what: "CSR", .. })
        ));
    }
}
