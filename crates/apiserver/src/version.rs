//! `/version`: the Kubernetes version whose API the server serves, which is k8s-openapi's API level. kubectl's
//! dispatcher runs the kubectl of the same minor version, so this also picks the user's kubectl.

use serde_json::{Value, json};

pub const MAJOR: &str = "1";
pub const MINOR: &str = "33";
pub const GIT_VERSION: &str = "v1.33.0-weft";

pub fn info() -> Value {
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("linux/{}", std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")),
    })
}
