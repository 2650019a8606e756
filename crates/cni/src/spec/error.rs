//! The CNI error object and the spec's well-known error codes.

use serde::Serialize;
use std::fmt;

/// Error codes defined by the CNI specification (1.1, "Error codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    NotAvailable = 50,
    NotAvailableDamaged = 51,
    /// Plugin-specific failures (the spec reserves 100 and up for them).
    Internal = 100,
}

/// A failure reported to the runtime as the spec's error JSON on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl fmt::Display) -> Self {
        self.details = details.to_string();
        self
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidConfig, msg)
    }

    pub fn unsupported(msg: impl Into<String>) -> Self {
        Self::new(Code::UnsupportedField, msg)
    }

    pub fn env(msg: impl Into<String>) -> Self {
        Self::new(Code::InvalidEnvironment, msg)
    }

    pub fn io(msg: impl Into<String>, err: impl fmt::Display) -> Self {
        Self::new(Code::Io, msg).with_details(err)
    }

    pub fn internal(msg: impl Into<String>, err: impl fmt::Display) -> Self {
        Self::new(Code::Internal, msg).with_details(err)
    }

    /// The JSON object the spec requires on stdout.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_value(Wire {
            cni_version,
            code: self.code as u32,
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_default()
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// Kernel-shell failures become I/O errors that keep the underlying message.
impl From<weft_netlink::Error> for CniError {
    fn from(err: weft_netlink::Error) -> Self {
        CniError::new(Code::Io, err.to_string())
    }
}

pub type Result<T, E = CniError> = std::result::Result<T, E>;
