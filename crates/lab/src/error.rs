//! Errors of the lab, each naming what it was doing.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Kernel {
        what: String,
        #[source]
        source: weft_netlink::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store {}: {source}", path.display())]
    Store {
        path: std::path::PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    Exists(weft_model::Key),
    #[error("lab {lab}: {msg}")]
    Lab { lab: String, msg: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done to a kernel error.
pub fn kernel(what: impl Into<String>) -> impl FnOnce(weft_netlink::Error) -> Error {
    let what = what.into();
    move |source| Error::Kernel { what, source }
}

/// Adds what was being done to an I/O error.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
