//! The bare forwarding baseline of the incumbent comparison: `bench_redirect` (two MAC
//! addresses written, XDP_REDIRECT to r1, nothing else) on r0, ending at the same counted
//! veth as both relays. It is swapped in between the relays' runs: attached to r0 while the
//! kernel module's block runs (r0 otherwise has no XDP), and put behind our daemon's pinned
//! r0 link with BPF_LINK_UPDATE while our block runs, then the relay program put back.
use std::{os::fd::AsFd, path::Path, time::Duration};

use anyhow::{Context, Result};
use aya::{Ebpf, maps::Array, programs::XdpMode};
use relay_ctl::{dataplane::links, netlink::ifindex};

use crate::{
    progs,
    topo::{R1_MAC, S0_MAC, Topo},
};

/// bench-ebpf's RedirectConfig.
#[repr(C)]
#[derive(Clone, Copy)]
struct RedirectConfig {
    macs: [u8; 12],
    ifindex: u32,
}
// SAFETY: repr(C), 16 bytes with no implicit padding.
unsafe impl aya::Pod for RedirectConfig {}

/// Before a program change on r0: the last run's frames leave the veth rings first. Every
/// XDP attach, detach or link update re-patches the kernel's XDP dispatcher; on 6.12 under
/// TCG, NAPI threads still running it while it was patched hit the patch's int3 once (an
/// oops, the guest lost). With the rings drained no CPU is inside it.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

pub struct Baseline {
    ebpf: Ebpf,
}

impl Baseline {
    /// Loaded and configured to send out of r1 to s0's MAC (as both relays do).
    pub fn load(t: &Topo) -> Result<Baseline> {
        let mut ebpf = progs::load(progs::REDIRECT)?;
        let r1 = t.relay.run(|| ifindex("r1"))??;
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&S0_MAC);
        macs[6..].copy_from_slice(&R1_MAC);
        let mut cfg: Array<_, RedirectConfig> = Array::try_from(
            ebpf.map_mut(progs::REDIRECT_MAP)
                .context("redirect config map")?,
        )?;
        cfg.set(0, &RedirectConfig { macs, ifindex: r1 }, 0)?;
        Ok(Baseline { ebpf })
    }

    /// Runs `f` with the baseline attached natively to r0 (which must have no program).
    pub fn attached<R>(&mut self, t: &Topo, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let prog = progs::program(&mut self.ebpf, progs::REDIRECT)?;
        settle();
        let id = t.relay.run(|| -> Result<_> {
            prog.attach(ifindex("r0")?, XdpMode::Driver)
                .context("attaching bench_redirect to r0 (native)")
        })??;
        let r = f();
        settle();
        let prog = progs::program(&mut self.ebpf, progs::REDIRECT)?;
        prog.detach(id)
            .context("detaching bench_redirect from r0")?;
        r
    }

    /// Runs `f` with the baseline behind the XDP link pinned at `link`, then puts the program
    /// pinned at `prog` back (also when `f` fails).
    pub fn swapped_into<R>(
        &mut self,
        link: &Path,
        prog: &Path,
        f: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        let baseline = progs::program(&mut self.ebpf, progs::REDIRECT)?;
        let fd = baseline.fd()?;
        settle();
        links::update_pinned_link(link, fd.as_fd())
            .with_context(|| format!("BPF_LINK_UPDATE {} -> bench_redirect", link.display()))?;
        let r = f();
        settle();
        let relay =
            links::pinned_fd(prog).with_context(|| format!("opening {}", prog.display()))?;
        links::update_pinned_link(link, relay.as_fd())
            .with_context(|| format!("BPF_LINK_UPDATE {} back to the relay", link.display()))?;
        r
    }
}
