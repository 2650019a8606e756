//! Errors of the node agent, each saying what the agent was doing.

use crate::overlay::Report;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("uplink {0} not found")]
    UplinkMissing(String),
    #[error("{name} exists but is not weft's VXLAN device ({kind}); refusing to touch it")]
    Foreign { name: String, kind: String },
    #[error("uplink MTU {mtu} leaves no room for the {overhead}-byte VXLAN encapsulation")]
    MtuTooSmall { mtu: u32, overhead: u32 },
    #[error("{context}: {source}")]
    Kernel {
        context: String,
        #[source]
        source: weft_netlink::Error,
    },
    /// A sync that made some changes and failed others; it went on after each failure so one bad peer does
    /// not hold back the rest. `report` counts what was done.
    #[error("sync incomplete ({report}): {}", list(errors))]
    Incomplete { report: Box<Report>, errors: Vec<Error> },
}

fn list(errors: &[Error]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl Error {
    pub(crate) fn kernel(context: impl Into<String>) -> impl FnOnce(weft_netlink::Error) -> Error {
        let context = context.into();
        move |source| Error::Kernel { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
