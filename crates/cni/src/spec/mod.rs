//! The CNI specification as data: environment, configuration, results, errors and versions.

pub mod config;
pub mod env;
pub mod error;
pub mod result;
pub mod version;

pub use config::NetConf;
pub use env::{Command, Invocation};
pub use error::{CniError, Code, Result};
pub use result::CniResult;
