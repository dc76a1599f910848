//! Running code inside a named network namespace (`/run/netns/<name>`, as `ip netns` makes).
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so work runs on a scoped helper
//! thread and the caller's namespace is never touched. Sockets created there stay in that
//! namespace after the thread ends.
use std::{fs::File, os::fd::AsRawFd, path::PathBuf};

use anyhow::{Context, Result, anyhow};

/// Path of a named network namespace.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Run `f` on a thread that has entered network namespace `name`.
pub fn in_netns<T, F>(name: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let path = netns_path(name);
    let ns = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: plain syscall on a valid fd; affects only this thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("setns into {}", path.display()));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow!("thread in netns {name} panicked"))?
    })
}

/// Interface index of `ifname` in the calling thread's namespace.
pub fn ifindex(ifname: &str) -> Result<u32> {
    let c = std::ffi::CString::new(ifname).context("interface name contains NUL")?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("no interface named {ifname}"));
    }
    Ok(idx)
}
