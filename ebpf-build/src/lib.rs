//! The one eBPF build step of the workspace's build scripts (relay-ctl builds relay-ebpf,
//! bench builds bench/ebpf): aya-build with the nightly pinned in
//! relay-ebpf/rust-toolchain.toml, the single source of truth for it.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow};
use aya_build::{Package, Toolchain};

/// The eBPF crate whose rust-toolchain.toml pins the nightly for every eBPF crate.
fn pin_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../relay-ebpf/rust-toolchain.toml")
}

/// Build eBPF package `package` (crate directory `root_dir`) with the pinned nightly, from a
/// build script. Cargo reruns the script when `root_dir` (aya-build watches it), the pin or
/// any of `extra_watch` changes (e.g. a shared-types crate the eBPF crate depends on).
pub fn build(package: &str, root_dir: &Path, extra_watch: &[&Path]) -> Result<()> {
    let pin_file = pin_file();
    for p in extra_watch.iter().copied().chain([pin_file.as_path()]) {
        println!("cargo::rerun-if-changed={}", p.display());
    }
    let pins =
        fs::read_to_string(&pin_file).with_context(|| format!("reading {}", pin_file.display()))?;
    let nightly = channel(&pins).ok_or_else(|| anyhow!("no channel in {}", pin_file.display()))?;
    let root_dir = root_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root_dir.display()))?;
    aya_build::build_ebpf(
        [Package {
            name: package,
            root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(&nightly),
    )
}

/// The `channel = "..."` of a rust-toolchain.toml.
fn channel(toml: &str) -> Option<String> {
    toml.lines().find_map(|l| {
        let v = l.trim().strip_prefix("channel")?.trim().strip_prefix('=')?;
        Some(v.trim().trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_channel_line() {
        let t = "# comment\n[toolchain]\nchannel = \"nightly-2026-10-29\"\ncomponents = []\n";
        assert_eq!(channel(t).as_deref(), Some("nightly-2026-10-29"));
        assert_eq!(channel("[toolchain]\n"), None);
    }

    #[test]
    fn the_pin_file_is_relay_ebpfs() {
        let pins = fs::read_to_string(pin_file()).expect("relay-ebpf/rust-toolchain.toml");
        assert!(channel(&pins).is_some_and(|c| c.starts_with("nightly-")));
    }
}
