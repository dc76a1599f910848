//! A two-instruction `XDP_PASS` program attached natively to a veth end, for the NAT boxes'
//! outside interfaces. The relay answers STUN with `XDP_TX`; veth puts such frames on the
//! peer's ring but only wakes the peer's NAPI if the peer has an XDP program itself (GRO is
//! enough for `XDP_REDIRECT`, which flushes explicitly). Without one, a STUN answer waits on
//! the ring until some other frame happens to wake the peer.
//!
//! Loaded with bpf(2) directly: it needs no ELF, maps or BTF, and the link fd held here
//! detaches it when dropped.
use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{Result, bail};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `r0 = XDP_PASS (2); exit`.
const PROG: [u8; 16] = [
    0xb7, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, // mov64 r0, 2
    0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // exit
];

/// The attached program; dropping it detaches it.
pub struct XdpPass {
    _link: OwnedFd,
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> Result<OwnedFd> {
    // SAFETY: `attr` is a zero-filled bpf_attr of the size passed; the pointers in it point at
    // statics or locals that outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        bail!("bpf({cmd}): {}", std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attach `XDP_PASS` in driver mode to `ifindex` (of the calling thread's namespace).
pub fn attach(ifindex: u32) -> Result<XdpPass> {
    use std::os::fd::AsRawFd;
    static LICENSE: &[u8] = b"GPL\0";
    let mut a = [0u8; 128];
    a[0..4].copy_from_slice(&BPF_PROG_TYPE_XDP.to_ne_bytes());
    a[4..8].copy_from_slice(&2u32.to_ne_bytes());
    a[8..16].copy_from_slice(&(PROG.as_ptr() as u64).to_ne_bytes());
    a[16..24].copy_from_slice(&(LICENSE.as_ptr() as u64).to_ne_bytes());
    a[48..52].copy_from_slice(b"pass");
    a[68..72].copy_from_slice(&BPF_XDP.to_ne_bytes());
    let prog = bpf(BPF_PROG_LOAD, &mut a)?;
    let mut l = [0u8; 128];
    l[0..4].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    l[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    l[8..12].copy_from_slice(&BPF_XDP.to_ne_bytes());
    l[12..16].copy_from_slice(&XDP_FLAGS_DRV_MODE.to_ne_bytes());
    let link = bpf(BPF_LINK_CREATE, &mut l)?;
    Ok(XdpPass { _link: link })
}
