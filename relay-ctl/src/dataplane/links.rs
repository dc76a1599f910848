//! Raw bpf(2) link commands aya does not expose: synchronous detach and program replacement
//! of a pinned XDP link.
//!
//! Unlinking a pin only drops a reference; the kernel frees the link (and detaches XDP) from
//! a workqueue a moment later. `relay-ctl detach` must not say "detached" while packets are
//! still being relayed, so it asks for BPF_LINK_DETACH (kernel 5.9+) first, which detaches at
//! once. BPF_LINK_UPDATE swaps the program behind a link atomically, without a moment with no
//! program on the interface (the benchmark swaps a baseline in and out this way).
use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;

/// `union bpf_attr`, zero-padded: the kernel rejects non-zero bytes past the fields it reads.
#[repr(C, align(8))]
struct Attr([u8; 64]);

fn bpf(cmd: libc::c_long, attr: &Attr) -> io::Result<libc::c_long> {
    // SAFETY: attr points to a valid, fully initialised buffer of the size we pass.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const Attr, size_of::<Attr>()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A new fd for the object (program, map or link) pinned at `path`.
pub fn pinned_fd(path: &Path) -> io::Result<OwnedFd> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut get = Attr([0; 64]);
    // struct { __aligned_u64 pathname; __u32 bpf_fd; __u32 file_flags; ... }
    get.0[..8].copy_from_slice(&(cpath.as_ptr() as u64).to_ne_bytes());
    let fd = bpf(BPF_OBJ_GET, &get)?;
    // SAFETY: the kernel just returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Detach the link pinned at `path` now. The pin itself is left for the caller to remove.
pub fn detach_pinned_link(path: &Path) -> io::Result<()> {
    let fd = pinned_fd(path)?;
    let mut detach = Attr([0; 64]);
    // struct { __u32 link_fd; }
    detach.0[..4].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    bpf(BPF_LINK_DETACH, &detach).map(|_| ())
}

/// Make the link pinned at `link` run `prog` instead of its current program (same type).
pub fn update_pinned_link(link: &Path, prog: BorrowedFd<'_>) -> io::Result<()> {
    let fd = pinned_fd(link)?;
    let mut update = Attr([0; 64]);
    // struct { __u32 link_fd; __u32 new_prog_fd; __u32 flags; __u32 old_prog_fd; }
    update.0[..4].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    update.0[4..8].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    bpf(BPF_LINK_UPDATE, &update).map(|_| ())
}
