//! Builds the XDP object (relay-ebpf) with the pinned nightly via aya-build (through the
//! workspace's ebpf-build helper), so that `cargo build -p relay-ctl` produces one binary with
//! the data plane embedded; then names what was built for `relay-ctl --version`
//! (`src/version.rs`): the git revision and a hash of the embedded object.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    // aya-build watches the eBPF crate; the shared types matter too.
    ebpf_build::build(
        "relay-ebpf",
        &manifest.join("../relay-ebpf"),
        &[&manifest.join("../relay-common")],
    )?;
    // The file `dataplane/load.rs` embeds.
    let object = PathBuf::from(env::var("OUT_DIR")?).join("relay-ebpf");
    let bytes = fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
    println!(
        "cargo::rustc-env=RELAY_EBPF_FNV1A64={:016x}",
        fnv1a64(&bytes)
    );
    println!(
        "cargo::rustc-env=RELAY_GIT_REVISION={}",
        git_revision(&manifest)
    );
    Ok(())
}

/// FNV-1a, 64 bit: enough to tell two builds' objects apart at a glance (not a security hash;
/// nothing trusts it). `version.rs`' test recomputes it over the embedded bytes.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `git rev-parse --short HEAD`, or "unknown" outside a git checkout (a source tarball) or
/// without git. Watches HEAD and the branch it names (in a worktree both live outside `.git/`
/// of the checkout, so ask git for their paths) so a commit or checkout rebuilds.
fn git_revision(dir: &Path) -> String {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    let path = |name: &str| git(&["rev-parse", "--path-format=absolute", "--git-path", name]);
    let mut watch = vec![path("HEAD"), path("packed-refs")];
    if let Some(head) = watch[0].as_ref().and_then(|h| fs::read_to_string(h).ok())
        && let Some(branch) = head.trim().strip_prefix("ref: ")
    {
        watch.push(path(branch));
    }
    // A path that does not exist would make cargo rerun this script on every build.
    for p in watch
        .into_iter()
        .flatten()
        .filter(|p| Path::new(p).exists())
    {
        println!("cargo::rerun-if-changed={p}");
    }
    git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
}
