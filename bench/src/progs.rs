//! The benchmark's own XDP programs (bench/ebpf), embedded like the relay's object.
use anyhow::{Context, Result};
use aya::{Ebpf, programs::Xdp};

static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-ebpf"));

pub const SWAP_TX: &str = "bench_swap_tx";
pub const COUNT_DROP: &str = "bench_count_drop";
pub const GEN: &str = "bench_gen";
pub const REDIRECT: &str = "bench_redirect";
pub const REDIRECT_MAP: &str = "BENCH_REDIRECT";
pub const GEN_MAP: &str = "BENCH_GEN";
pub const COUNT_MAP: &str = "BENCH_COUNT";

/// A fresh instance of the object (own maps) with program `name` loaded (verified).
pub fn load(name: &str) -> Result<Ebpf> {
    let mut ebpf = Ebpf::load(BENCH_OBJECT).context("loading the bench eBPF object")?;
    program(&mut ebpf, name)?
        .load()
        .with_context(|| format!("verifying {name}"))?;
    Ok(ebpf)
}

pub fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .with_context(|| format!("program {name} missing"))?
        .try_into()
        .with_context(|| format!("{name} is not XDP"))
}

/// `struct xdp_md` for BPF_PROG_RUN: data, data_end, data_meta, ingress_ifindex,
/// rx_queue_index, egress_ifindex.
pub fn xdp_md(len: usize, ingress: u32) -> Vec<u8> {
    [0u32, len as u32, 0, ingress, 0, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
}

pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;
