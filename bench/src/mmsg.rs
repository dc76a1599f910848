//! The plain-socket reference relay: one thread, epoll over every leg's socket, recvmmsg up to
//! 64 datagrams and sendmmsg them on, from the other side's socket to the leg's destination.
//! This is the best a socket-based relay does per core without kernel help (no per-packet
//! syscalls, no copies beyond the socket's own), so it is the fair userspace reference.
use std::{
    fs,
    mem::zeroed,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

const BATCH: usize = 64;
const BUF: usize = 2048;

struct Leg {
    rx: UdpSocket,
    tx: UdpSocket,
    dst: libc::sockaddr_in,
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as u16;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
    s
}

/// Parse "listen_port dst_ip:dst_port" lines.
fn parse_legs(text: &str) -> Result<Vec<(u16, SocketAddrV4)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            let port = it
                .next()
                .context("listen port")?
                .parse()
                .context("listen port")?;
            let dst = it
                .next()
                .context("destination")?
                .parse()
                .context("destination")?;
            Ok((port, dst))
        })
        .collect()
}

pub fn serve(legs: &Path, listen: Ipv4Addr, source: Ipv4Addr, max_secs: u64) -> Result<()> {
    let spec = parse_legs(&fs::read_to_string(legs).context("reading the legs file")?)?;
    let mut all = Vec::with_capacity(spec.len());
    for (port, dst) in spec {
        let rx =
            UdpSocket::bind((listen, port)).with_context(|| format!("bind {listen}:{port}"))?;
        let tx =
            UdpSocket::bind((source, port)).with_context(|| format!("bind {source}:{port}"))?;
        rx.set_nonblocking(true)?;
        all.push(Leg {
            rx,
            tx,
            dst: sockaddr(dst),
        });
    }
    // SAFETY: plain syscalls on fds we own; buffers outlive the calls.
    let ep = unsafe { libc::epoll_create1(0) };
    if ep < 0 {
        bail!("epoll_create1: {}", std::io::Error::last_os_error());
    }
    for (i, leg) in all.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, leg.rx.as_raw_fd(), &mut ev) } != 0 {
            bail!("epoll_ctl: {}", std::io::Error::last_os_error());
        }
    }
    eprintln!("mmsg-relay: ready, {} legs", all.len());
    let mut bufs = vec![[0u8; BUF]; BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: BUF,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let deadline = Instant::now() + Duration::from_secs(max_secs);
    while Instant::now() < deadline {
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 200) };
        for ev in events.iter().take(n.max(0) as usize) {
            let Some(leg) = all.get(ev.u64 as usize) else {
                continue;
            };
            loop {
                for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
                    v.iov_len = BUF;
                    m.msg_hdr = unsafe { zeroed() };
                    m.msg_hdr.msg_iov = v;
                    m.msg_hdr.msg_iovlen = 1;
                }
                let got = unsafe {
                    libc::recvmmsg(
                        leg.rx.as_raw_fd(),
                        msgs.as_mut_ptr(),
                        BATCH as u32,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if got <= 0 {
                    break;
                }
                let mut dst = leg.dst;
                for (m, v) in msgs.iter_mut().zip(iov.iter_mut()).take(got as usize) {
                    v.iov_len = m.msg_len as usize;
                    m.msg_hdr.msg_name = (&mut dst as *mut libc::sockaddr_in).cast();
                    m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
                }
                // A full send buffer drops the rest of the batch, like a busy relay would.
                unsafe { libc::sendmmsg(leg.tx.as_raw_fd(), msgs.as_mut_ptr(), got as u32, 0) };
                if (got as usize) < BATCH {
                    break;
                }
            }
        }
    }
    unsafe { libc::close(ep) };
    Ok(())
}
