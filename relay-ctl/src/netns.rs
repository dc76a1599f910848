//! Interface lookups relative to the calling thread's network namespace (the daemon resolves
//! its `--iface` names here; tests call it on a thread inside a test namespace). Entering
//! namespaces is test support and lives in the relay-testbed crate.
use anyhow::{Context, Result};

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
