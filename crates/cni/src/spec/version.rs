//! CNI specification versions: which ones weft speaks and how results differ between them.

use super::error::{CniError, Code, Result};

/// Every version weft accepts, oldest first; VERSION reports this list.
pub const SUPPORTED: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version; used for errors raised before a config was read.
pub const LATEST: &str = "1.1.0";

/// The result shapes the spec has had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// 0.1.0 and 0.2.0: `ip4`/`ip6` objects.
    V020,
    /// 0.3.0 and 0.3.1: `interfaces` and `ips` with a `version` field.
    V031,
    /// 0.4.0: as 0.3.1, plus CHECK.
    V040,
    /// 1.0.0: `ips` without `version`.
    V100,
    /// 1.1.0: STATUS, GC, route attributes.
    V110,
}

impl Version {
    pub fn parse(s: &str) -> Result<Version> {
        Ok(match s {
            "0.1.0" | "0.2.0" => Version::V020,
            "0.3.0" | "0.3.1" => Version::V031,
            "0.4.0" => Version::V040,
            "1.0.0" => Version::V100,
            "1.1.0" => Version::V110,
            other => {
                return Err(CniError::new(
                    Code::IncompatibleVersion,
                    format!(
                        "cniVersion {other:?} is not supported (supported: {})",
                        SUPPORTED.join(", ")
                    ),
                ));
            }
        })
    }

    pub fn supports_check(self) -> bool {
        self >= Version::V040
    }

    pub fn supports_status_and_gc(self) -> bool {
        self >= Version::V110
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_parses_and_nothing_else_does() {
        for v in SUPPORTED {
            assert!(Version::parse(v).is_ok(), "{v}");
        }
        for bad in ["", "1.2.0", "0.3", "v1.0.0", "1.0.0 "] {
            assert_eq!(Version::parse(bad).unwrap_err().code, Code::IncompatibleVersion);
        }
    }

    #[test]
    fn check_needs_040_and_status_needs_110() {
        assert!(!Version::parse("0.3.1").unwrap().supports_check());
        assert!(Version::parse("0.4.0").unwrap().supports_check());
        assert!(!Version::parse("1.0.0").unwrap().supports_status_and_gc());
        assert!(Version::parse("1.1.0").unwrap().supports_status_and_gc());
    }
}
