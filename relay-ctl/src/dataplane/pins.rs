//! Where an instance's pinned objects live on bpffs:
//!
//! ```text
//! <root>/<instance>/prog          the XDP program
//! <root>/<instance>/maps/<NAME>   every map (names from relay_common::map_names)
//! <root>/<instance>/links/<IF>    one XDP link per attached interface
//! ```
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

/// Default bpffs root for all instances.
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/media-relay";

#[derive(Clone, Debug)]
pub struct Instance {
    dir: PathBuf,
}

impl Instance {
    /// The instance `name` under `root`. Names are one path component of `[A-Za-z0-9_.-]`.
    pub fn new(root: impl AsRef<Path>, name: &str) -> Result<Instance> {
        let ok = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        anyhow::ensure!(
            ok,
            "invalid instance name {name:?}: use letters, digits, '_', '.', '-'"
        );
        Ok(Instance {
            dir: root.as_ref().join(name),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn prog_path(&self) -> PathBuf {
        self.dir.join("prog")
    }
    pub fn map_path(&self, map: &str) -> PathBuf {
        self.dir.join("maps").join(map)
    }
    pub fn links_dir(&self) -> PathBuf {
        self.dir.join("links")
    }
    pub fn link_path(&self, ifname: &str) -> PathBuf {
        self.links_dir().join(ifname)
    }

    /// True if anything is pinned for this instance.
    pub fn exists(&self) -> bool {
        self.dir.exists()
    }

    /// Create the directories (bpffs supports mkdir).
    pub fn create_dirs(&self) -> Result<()> {
        for d in [self.dir.join("maps"), self.links_dir()] {
            fs::create_dir_all(&d).with_context(|| {
                format!(
                    "creating {} (is bpffs mounted at /sys/fs/bpf?)",
                    d.display()
                )
            })?;
        }
        Ok(())
    }

    /// Interfaces with a pinned link.
    pub fn pinned_links(&self) -> Result<Vec<String>> {
        match fs::read_dir(self.links_dir()) {
            Ok(rd) => rd
                .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(e).context("listing pinned links"),
        }
    }

    /// Detach XDP from every pinned interface (synchronously), then remove every pin; the
    /// maps are freed once nothing else holds them.
    pub fn remove(&self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        for ifname in self.pinned_links()? {
            let path = self.link_path(&ifname);
            // A link whose interface is gone (namespace deleted) is already defunct: ENOLINK.
            match super::links::detach_pinned_link(&path) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("detaching {}", path.display()));
                }
            }
        }
        fs::remove_dir_all(&self.dir).with_context(|| format!("removing {}", self.dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_safe_components() {
        assert!(Instance::new("/r", "edge-1.a_b").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "x\0"] {
            assert!(Instance::new("/r", bad).is_err(), "{bad:?} accepted");
        }
        let i = Instance::new("/r", "e1").unwrap();
        assert_eq!(i.map_path("M"), Path::new("/r/e1/maps/M"));
        assert_eq!(i.link_path("eth0"), Path::new("/r/e1/links/eth0"));
    }
}
