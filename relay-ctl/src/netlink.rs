//! Interfaces and their addresses over rtnetlink (docs/design.md section 5: netlink, not parsing
//! `ip` output).
//!
//! Each call opens its own netlink socket, in the network namespace of the thread that first
//! polls the future: run these on a runtime whose threads are in the namespace you mean (the
//! tests build a current-thread runtime inside one).
use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use rtnetlink::{
    Handle,
    packet_route::{
        AddressFamily,
        address::{
            AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
        },
    },
};

/// Index of interface `name`.
pub async fn link_index(name: &str) -> Result<u32> {
    Netlink::open()?.link_index(name).await
}

/// Global-scope addresses of interface `name`: IPv4 first, then IPv6, each in the kernel's
/// order. Host- and link-scope addresses (loopback, fe80::/10) are left out: peers cannot reach
/// them. Empty if the interface has none.
pub async fn interface_addrs(name: &str) -> Result<Vec<IpAddr>> {
    let nl = Netlink::open()?;
    let idx = nl.link_index(name).await?;
    nl.addrs(idx).await
}

/// The relay addresses of each interface, for when none are configured; an interface without
/// any is an error, since the relay could not advertise a port on it.
pub async fn relay_addrs(ifaces: &[String]) -> Result<Vec<(String, Vec<IpAddr>)>> {
    let nl = Netlink::open()?;
    let mut out = Vec::with_capacity(ifaces.len());
    for name in ifaces {
        let idx = nl.link_index(name).await?;
        let addrs = nl.addrs(idx).await?;
        if addrs.is_empty() {
            bail!("interface {name} has no IPv4 or IPv6 address: give --relay-addr");
        }
        out.push((name.clone(), addrs));
    }
    Ok(out)
}

/// Every global address of every interface of this namespace (the box's own addresses, which
/// the reflector must never send to).
pub async fn box_addrs() -> Result<Vec<IpAddr>> {
    let nl = Netlink::open()?;
    let msgs: Vec<AddressMessage> = nl
        .handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .context("listing this box's addresses over netlink")?;
    Ok(msgs.iter().filter_map(usable_addr).collect())
}

/// One rtnetlink connection; its task is stopped when this is dropped, so nothing outlives
/// the call that opened it.
struct Netlink {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Netlink {
    fn open() -> Result<Netlink> {
        let (conn, handle, _) =
            rtnetlink::new_connection().context("opening a NETLINK_ROUTE socket")?;
        Ok(Netlink {
            handle,
            task: tokio::spawn(conn),
        })
    }

    async fn link_index(&self, name: &str) -> Result<u32> {
        // The kernel answers an over-long or empty name with EINVAL; say what is wrong instead.
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            bail!("no interface named {name:?} (not a valid interface name)");
        }
        let reply = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_next()
            .await;
        match reply {
            Ok(Some(msg)) => Ok(msg.header.index),
            Ok(None) => bail!("no interface named {name}"),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                bail!("no interface named {name}")
            }
            Err(e) => Err(e).with_context(|| format!("looking up interface {name} over netlink")),
        }
    }

    async fn addrs(&self, index: u32) -> Result<Vec<IpAddr>> {
        // The kernel cannot filter an address dump by interface; rtnetlink filters the replies.
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .with_context(|| format!("listing the addresses of interface {index} over netlink"))?;
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for msg in &msgs {
            match usable_addr(msg) {
                Some(ip @ IpAddr::V4(_)) => v4.push(ip),
                Some(ip @ IpAddr::V6(_)) => v6.push(ip),
                None => {}
            }
        }
        v4.extend(v6);
        Ok(v4)
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The address of `msg` if the relay can use it: global scope, not link-local, DAD not failed.
fn usable_addr(msg: &AddressMessage) -> Option<IpAddr> {
    if msg.header.scope != AddressScope::Universe
        || !matches!(
            msg.header.family,
            AddressFamily::Inet | AddressFamily::Inet6
        )
    {
        return None;
    }
    // IFA_FLAGS carries all 32 flag bits; the header only the low 8 (older kernels send only
    // those).
    let dad_failed = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(f.contains(AddressFlags::Dadfailed)),
            _ => None,
        })
        .unwrap_or(msg.header.flags.contains(AddressHeaderFlags::Dadfailed));
    if dad_failed {
        return None;
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on a point-to-point
    // link and equals IFA_LOCAL otherwise. IPv6 usually sends only IFA_ADDRESS.
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    let ip = local.or(address)?;
    // Scope already excludes link-local, but a global-scope fe80:: would still be unreachable.
    if let IpAddr::V6(v6) = ip
        && (v6.segments()[0] & 0xffc0) == 0xfe80
    {
        return None;
    }
    Some(ip)
}

/// Interface index of an interface name in the calling thread's network namespace (the
/// daemon resolves its `--iface` names with it; tests call it inside a test namespace).
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use rtnetlink::packet_route::address::AddressHeader;

    use super::*;

    fn msg(
        family: AddressFamily,
        scope: AddressScope,
        attrs: Vec<AddressAttribute>,
    ) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header = AddressHeader {
            family,
            prefix_len: 24,
            flags: AddressHeaderFlags::Permanent,
            scope,
            index: 2,
        };
        m.attributes = attrs;
        m
    }

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254));
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));

    #[test]
    fn prefers_local_over_peer_address() {
        use AddressAttribute::*;
        let m = msg(
            AddressFamily::Inet,
            AddressScope::Universe,
            vec![Address(PEER), Local(V4)],
        );
        assert_eq!(usable_addr(&m), Some(V4));
        let m = msg(
            AddressFamily::Inet6,
            AddressScope::Universe,
            vec![Address(V6)],
        );
        assert_eq!(usable_addr(&m), Some(V6));
    }

    #[test]
    fn skips_non_global_link_local_and_dad_failed() {
        use AddressAttribute::*;
        let m = msg(AddressFamily::Inet, AddressScope::Host, vec![Local(V4)]);
        assert_eq!(usable_addr(&m), None);
        let m = msg(AddressFamily::Inet, AddressScope::Link, vec![Local(V4)]);
        assert_eq!(usable_addr(&m), None);
        let ll = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 7));
        let m = msg(
            AddressFamily::Inet6,
            AddressScope::Universe,
            vec![Address(ll)],
        );
        assert_eq!(usable_addr(&m), None);
        let m = msg(
            AddressFamily::Inet6,
            AddressScope::Universe,
            vec![
                Address(V6),
                Flags(AddressFlags::Dadfailed | AddressFlags::Permanent),
            ],
        );
        assert_eq!(usable_addr(&m), None);
        let m = msg(AddressFamily::Inet6, AddressScope::Universe, vec![]);
        assert_eq!(usable_addr(&m), None);
    }
}
