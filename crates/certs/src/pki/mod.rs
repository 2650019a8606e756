//! Keys, CSRs and certificates: what the issuers sign and what the Certificate controller checks a Secret with.

pub mod key;
pub mod x509;

/// A key, request or certificate that cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("private key: {0}")]
    Key(String),
    #[error("unsupported private key size {1} for algorithm {0}")]
    KeySize(String, u32),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("{0}")]
    Request(String),
}

/// PEM with LF line ends, as rcgen and Go write it.
fn to_pem(block: &pem::Pem) -> String {
    pem::encode_config(block, pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}
