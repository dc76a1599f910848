//! `relay_ctl::netlink` against a real kernel: an interface with known addresses in a
//! namespace made for the test, queried from a runtime whose thread is inside it.
use std::{
    net::IpAddr,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use relay_ctl::netlink;
use relay_testbed::Netns;

/// A namespace with `d0` (up, 192.0.2.1/24, 198.51.100.7/24, 2001:db8::7/64, a link-scope
/// 203.0.113.9/24 and the kernel's fe80:: address, the last two not to be reported) and `d1`
/// (up, only its fe80:: address). The two are a veth pair: this kernel has no dummy driver.
fn namespace(tag: &str) -> Result<Netns> {
    let ns = Netns::add(&format!("mr-nl-{}-{tag}", std::process::id()))?;
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"])?;
    for ifname in ["d0", "d1"] {
        ns.ip(&["link", "set", ifname, "up"])?;
    }
    // IPv6 first: the result must still list IPv4 first. nodad: usable at once.
    ns.ip(&["addr", "add", "2001:db8::7/64", "dev", "d0", "nodad"])?;
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "d0"])?;
    ns.ip(&["addr", "add", "198.51.100.7/24", "dev", "d0"])?;
    ns.ip(&[
        "addr",
        "add",
        "203.0.113.9/24",
        "dev",
        "d0",
        "scope",
        "link",
    ])?;
    // The link-local exclusion only means something once the kernel has made the fe80::
    // addresses, which it does when the veth carrier comes up (asynchronously). Checked with
    // iproute2, independently of the code under test.
    for ifname in ["d0", "d1"] {
        wait_for_link_local(&ns, ifname)?;
    }
    Ok(ns)
}

fn wait_for_link_local(ns: &Netns, ifname: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("ip")
            .args(["-n", ns.name(), "-6", "addr", "show", "dev", ifname])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("inet6 fe80::") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{ifname} got no IPv6 link-local address: {text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `f` on a current-thread runtime built inside the namespace, so the netlink sockets
/// open there.
fn in_ns<T: Send, F: Future<Output = T>>(ns: &Netns, f: impl FnOnce() -> F + Send) -> Result<T> {
    ns.run(|| -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(rt.block_on(f()))
    })?
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn addresses_and_index_of_an_interface() {
    let ns = namespace("ok").unwrap();
    let (idx, d0, lo, relay) = in_ns(&ns, || async {
        (
            netlink::link_index("d0").await,
            netlink::interface_addrs("d0").await,
            netlink::interface_addrs("lo").await,
            netlink::relay_addrs(&["d0".to_owned()]).await,
        )
    })
    .unwrap();

    assert_eq!(idx.unwrap(), ns.ifindex("d0").unwrap());
    let want = ips(&["192.0.2.1", "198.51.100.7", "2001:db8::7"]);
    assert_eq!(d0.unwrap(), want);
    // Loopback's addresses are host scope.
    assert_eq!(lo.unwrap(), Vec::<IpAddr>::new());
    assert_eq!(relay.unwrap(), vec![("d0".to_owned(), want)]);
}

#[test]
fn errors_name_the_interface() {
    let ns = namespace("err").unwrap();
    let (idx, addrs, relay_missing, relay_empty) = in_ns(&ns, || async {
        (
            netlink::link_index("nope0").await,
            netlink::interface_addrs("nope0").await,
            netlink::relay_addrs(&["d0".to_owned(), "nope0".to_owned()]).await,
            netlink::relay_addrs(&["d0".to_owned(), "d1".to_owned()]).await,
        )
    })
    .unwrap();

    for r in [
        idx.map(|_| ()),
        addrs.map(|_| ()),
        relay_missing.map(|_| ()),
    ] {
        let e = format!("{:#}", r.unwrap_err());
        assert_eq!(e, "no interface named nope0");
    }
    assert_eq!(
        format!("{:#}", relay_empty.unwrap_err()),
        "interface d1 has no IPv4 or IPv6 address: give --relay-addr"
    );
    // d1 has a link-local address only, which is not a relay address.
    let d1 = in_ns(&ns, || netlink::interface_addrs("d1"))
        .unwrap()
        .unwrap();
    assert!(d1.is_empty(), "{d1:?}");

    let long = in_ns(&ns, || netlink::link_index("an-overlong-ifname")).unwrap();
    assert!(format!("{:#}", long.unwrap_err()).contains("not a valid interface name"));
}
