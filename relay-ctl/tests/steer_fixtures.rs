//! The port-steering program (`relay_steer`, sk_lookup) through BPF_PROG_TEST_RUN: a table of
//! lookups (family, protocol, local address and port) and the receive socket each must be
//! handed to, or none (the stack's ordinary lookup decides). The maps and sockets are the
//! daemon's own (`dataplane::steer::load`), in a namespace holding the relay addresses.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, RawFd},
};

use relay_ctl::{dataplane::steer, ports::PortRange};
use relay_testbed::Netns;

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 2);
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 3);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 1);
const MIN: u16 = 30_000;
const MAX: u16 = 30_099;
const UDP: u32 = 17;
const TCP: u32 = 6;
const SK_PASS: u32 = 1;

/// `struct bpf_sk_lookup` as BPF_PROG_TEST_RUN takes it (72 bytes with its tail padding).
fn lookup_ctx(protocol: u32, local: IpAddr, port: u16) -> [u8; 72] {
    let mut c = [0u8; 72];
    let (family, ip4, ip6) = match local {
        IpAddr::V4(a) => (2u32, a.octets(), [0u8; 16]),
        IpAddr::V6(a) => (10u32, [0u8; 4], a.octets()),
    };
    c[8..12].copy_from_slice(&family.to_ne_bytes());
    c[12..16].copy_from_slice(&protocol.to_ne_bytes());
    // A remote endpoint, as a real lookup has one: 203.0.113.9:5004 / 2001:db8:99::9.
    c[16..20].copy_from_slice(&[203, 0, 113, 9]);
    c[20..36].copy_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 9).octets());
    c[36..38].copy_from_slice(&5004u16.to_be_bytes());
    c[40..44].copy_from_slice(&ip4);
    c[44..60].copy_from_slice(&ip6);
    c[60..64].copy_from_slice(&u32::from(port).to_ne_bytes());
    c
}

/// Runs the program once on `ctx`: (return value, cookie of the socket it selected or 0).
fn test_run(prog: RawFd, ctx: &[u8; 72]) -> (u32, u64) {
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    let mut out = [0u8; 72];
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(prog as u32).to_ne_bytes());
    attr[32..36].copy_from_slice(&1u32.to_ne_bytes()); // repeat
    attr[40..44].copy_from_slice(&72u32.to_ne_bytes()); // ctx_size_in
    attr[44..48].copy_from_slice(&72u32.to_ne_bytes()); // ctx_size_out
    attr[48..56].copy_from_slice(&(ctx.as_ptr() as u64).to_ne_bytes());
    attr[56..64].copy_from_slice(&(out.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: `attr` is a zero-filled bpf_attr of the size passed; its pointers point at
    // locals of the sizes given, which outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_TEST_RUN, attr.as_mut_ptr(), 128) };
    assert_eq!(
        rc,
        0,
        "BPF_PROG_TEST_RUN: {}",
        std::io::Error::last_os_error()
    );
    let retval = u32::from_ne_bytes(attr[4..8].try_into().expect("4 bytes"));
    let cookie = u64::from_ne_bytes(out[0..8].try_into().expect("8 bytes"));
    (retval, cookie)
}

fn cookie(sock: &impl AsRawFd) -> u64 {
    let mut v = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid out pointer and its length.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "SO_COOKIE: {}", std::io::Error::last_os_error());
    v
}

#[test]
fn steering_fixture_table() {
    let ns = Netns::add(&format!("steer{}", std::process::id())).expect("netns");
    for cidr in [format!("{A}/24"), format!("{B}/24"), format!("{OTHER}/24")] {
        ns.ip(&["addr", "add", &cidr, "dev", "lo"]).expect("addr");
    }
    ns.ip(&["addr", "add", &format!("{A6}/64"), "dev", "lo", "nodad"])
        .expect("addr6");
    let failures = ns
        .run(|| {
            let addrs = [IpAddr::V4(A), IpAddr::V4(B), IpAddr::V6(A6)];
            let range = PortRange::new(MIN, MAX).expect("range");
            let (mut st, socks) = steer::load(&addrs, range).expect("steering loads");
            let prog = st.program_fd().expect("program fd");
            let [ca, cb, c6] = [0, 1, 2].map(|i| cookie(&socks[i]));
            // (name, protocol, local address, port, the socket it must go to or 0 for none)
            let table: Vec<(&str, u32, IpAddr, u16, u64)> = vec![
                ("first port of the range", UDP, A.into(), MIN, ca),
                ("last port of the range", UDP, A.into(), MAX, ca),
                ("middle, second address", UDP, B.into(), MIN + 51, cb),
                ("below the range", UDP, A.into(), MIN - 1, 0),
                ("above the range", UDP, A.into(), MAX + 1, 0),
                ("SIP port on a relay address", UDP, A.into(), 5062, 0),
                ("an address that is not a relay address", UDP, OTHER.into(), MIN, 0),
                ("TCP to a relay port", TCP, A.into(), MIN, 0),
                ("IPv6 relay address", UDP, A6.into(), MIN + 10, c6),
                ("IPv6 outside the range", UDP, A6.into(), MAX + 1, 0),
                (
                    "IPv6 address whose first word is the IPv4 relay address",
                    UDP,
                    IpAddr::V6(Ipv6Addr::from(
                        u128::from(u32::from(A)) << 96 | 1,
                    )),
                    MIN,
                    0,
                ),
            ];
            let mut failures = vec![];
            for (name, proto, local, port, want) in &table {
                let (rc, got) = test_run(prog, &lookup_ctx(*proto, *local, *port));
                if rc != SK_PASS || got != *want {
                    failures.push(format!(
                        "[{name}] {local}:{port}: verdict {rc} socket {got}, want verdict {SK_PASS} socket {want}"
                    ));
                }
            }
            eprintln!("{} steering cases, {} failed", table.len(), failures.len());
            failures
        })
        .expect("run in netns");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
