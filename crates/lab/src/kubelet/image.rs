//! Images. The lab pulls none: containers run the host's programs, except that weft's own image (any image
//! whose repository is `weft` or ends in `/weft`, e.g. `ghcr.io/weft-project/weft:v1`) is the binaries the lab
//! was built with: its /usr/local/bin holds `weft` and `weft-cni` (links to the lab's `weftBin` and `cniBin`),
//! bound over the host's /usr/local/bin in the container, so `command: [weft, agent]` and
//! `cp /usr/local/bin/weft-cni /host/opt/cni/bin/weft` do what they do with the real image.

use crate::error::{Result, io};
use crate::sandbox::Bind;
use crate::spec::{LabSpec, Paths};
use std::path::PathBuf;

/// Where the weft image keeps its binaries.
pub const BIN_DIR: &str = "/usr/local/bin";

/// Whether `image` is weft's: its repository (without registry port, tag or digest) is `weft` or ends in `/weft`.
pub fn is_weft(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or_default();
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let repo = match name[last_slash..].find(':') {
        Some(colon) => &name[..last_slash + colon],
        None => name,
    };
    repo == "weft" || repo.ends_with("/weft")
}

fn bin_dir(paths: &Paths) -> PathBuf {
    paths.images_dir().join("weft").join(&BIN_DIR[1..])
}

/// Lays out the weft image's files for this lab's binaries.
pub fn install(paths: &Paths, spec: &LabSpec) -> Result<()> {
    let dir = bin_dir(paths);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    for (name, target) in [("weft", &spec.weft_bin), ("weft-cni", &spec.cni_bin)] {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).map_err(io(format!("linking {}", link.display())))?;
    }
    Ok(())
}

/// What a container of `image` gets bound in: the weft image's /usr/local/bin, or nothing.
pub fn binds(paths: &Paths, image: Option<&str>) -> Vec<Bind> {
    match image {
        Some(image) if is_weft(image) => vec![Bind {
            source: bin_dir(paths),
            target: PathBuf::from(BIN_DIR),
            read_only: true,
        }],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weft_images_are_known_by_their_repository() {
        for image in [
            "weft",
            "weft:dev",
            "ghcr.io/weft-project/weft:v1.2",
            "localhost:5000/weft",
            "x/weft@sha256:ab",
        ] {
            assert!(is_weft(image), "{image}");
        }
        for image in [
            "nginx",
            "weftx",
            "ghcr.io/weft-project/weft-dns:v1",
            "weft.io/nginx:weft",
            "busybox:weft",
        ] {
            assert!(!is_weft(image), "{image}");
        }
    }
}
