//! Builds the benchmark's XDP programs (bench/ebpf) with the same pinned nightly as the relay,
//! through the workspace's ebpf-build helper.
use std::{env, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    ebpf_build::build("bench-ebpf", &manifest.join("ebpf"), &[])
}
