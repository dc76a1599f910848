//! Attaching XDP to an interface: native (driver) mode where the NIC supports it, generic
//! otherwise, and saying which.
use anyhow::{Context, Result, bail};
use aya::programs::{Xdp, XdpMode, links::FdLink};

/// What the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeChoice {
    /// Native, falling back to generic with a warning.
    Auto,
    /// Native only; fail if the driver cannot.
    Native,
    /// Generic (skb) only.
    Generic,
}

/// What the kernel accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

impl AttachedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        }
    }
}

/// Attach `prog` to interface `ifindex` (named `ifname` in messages). Returns a link that can be
/// pinned: XDP through bpf_link (kernel 5.9+), which outlives this process once pinned.
pub fn attach_xdp(
    prog: &mut Xdp,
    ifname: &str,
    ifindex: u32,
    choice: XdpModeChoice,
) -> Result<(FdLink, AttachedMode)> {
    let try_mode = |prog: &mut Xdp, mode: XdpMode| -> Result<FdLink> {
        let id = prog.attach(ifindex, mode)?;
        let link = prog.take_link(id)?;
        FdLink::try_from(link).context("kernel attached XDP without a bpf_link (kernel < 5.9?)")
    };
    match choice {
        XdpModeChoice::Generic => try_mode(prog, XdpMode::Skb)
            .map(|l| (l, AttachedMode::Generic))
            .with_context(|| format!("attaching generic XDP to {ifname}")),
        XdpModeChoice::Native => try_mode(prog, XdpMode::Driver)
            .map(|l| (l, AttachedMode::Native))
            .with_context(|| format!("attaching native XDP to {ifname}")),
        XdpModeChoice::Auto => match try_mode(prog, XdpMode::Driver) {
            Ok(l) => Ok((l, AttachedMode::Native)),
            Err(native_err) => {
                log::warn!(
                    "{ifname}: native XDP not available ({native_err:#}); falling back to generic XDP (slower)"
                );
                match try_mode(prog, XdpMode::Skb) {
                    Ok(l) => Ok((l, AttachedMode::Generic)),
                    Err(e) => {
                        bail!("attaching XDP to {ifname}: native: {native_err:#}; generic: {e:#}")
                    }
                }
            }
        },
    }
}
