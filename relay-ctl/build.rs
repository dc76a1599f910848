//! Builds the XDP object (relay-ebpf) with the pinned nightly via aya-build (through the
//! workspace's ebpf-build helper), so that `cargo build -p relay-ctl` produces one binary with
//! the data plane embedded.
use std::{env, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    // aya-build watches the eBPF crate; the shared types matter too.
    ebpf_build::build(
        "relay-ebpf",
        &manifest.join("../relay-ebpf"),
        &[&manifest.join("../relay-common")],
    )
}
