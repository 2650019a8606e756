//! Errors from the kernel shell, each naming the object and the operation that failed.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("netlink: malformed reply to {op}: {msg}")]
    Decode { op: String, msg: String },
    #[error("network namespace {path}: {source}")]
    Netns {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("sysctl {key}: {source}")]
    Sysctl {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("{program}: {msg}")]
    Command { program: String, msg: String },
    #[error("{0} not found")]
    NotFound(String),
}

impl Error {
    /// True when the kernel said the object does not exist (ENOENT, ENODEV, ESRCH, EADDRNOTAVAIL).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound(_) => true,
            Error::Netlink { source, .. } | Error::Netns { source, .. } | Error::Sysctl { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENOENT | libc::ENODEV | libc::ESRCH | libc::EADDRNOTAVAIL)
            ),
            _ => false,
        }
    }

    /// True when the kernel said the object is already there (EEXIST).
    pub fn is_exists(&self) -> bool {
        matches!(self, Error::Netlink { source, .. } if source.raw_os_error() == Some(libc::EEXIST))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
