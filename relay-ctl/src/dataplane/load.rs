//! Loading the embedded XDP object into the kernel.
use anyhow::{Context, Result};
use aya::{Ebpf, EbpfLoader, programs::Xdp};
use relay_common::{PROGRAM_NAME, map_names};

/// The XDP object built by `build.rs` (aya-build, pinned nightly) and embedded in the binary.
pub static RELAY_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay-ebpf"));

/// Load the object with room for `max_legs` legs and load (verify) the XDP program.
pub fn load(max_legs: u32) -> Result<Ebpf> {
    anyhow::ensure!(max_legs > 0, "max legs must be at least 1");
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(map_names::LEGS, max_legs)
        .map_max_entries(map_names::LEG_STATS, max_legs)
        .load(RELAY_OBJECT)
        .context("loading the relay eBPF object (maps)")?;
    relay_program(&mut ebpf)?
        .load()
        .context("loading the XDP program into the kernel (verifier)")?;
    Ok(ebpf)
}

/// The relay's XDP program in a loaded object.
pub fn relay_program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let prog = ebpf
        .program_mut(PROGRAM_NAME)
        .with_context(|| format!("program {PROGRAM_NAME} missing from the object"))?;
    prog.try_into()
        .with_context(|| format!("program {PROGRAM_NAME} is not XDP"))
}
