//! The UDP calls the relay's steered sockets need and std/tokio do not offer: receiving a
//! datagram with the destination it was sent to (one socket receives for every relay port of
//! an address, see `dataplane/steer.rs`), and sending from any relay port without holding a
//! socket on it.
use std::{
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket},
    os::fd::{AsRawFd, RawFd},
};

use socket2::{Domain, Protocol, Socket, Type};

/// What the receive sockets ask of the kernel's socket buffer: room for bursts of first
/// packets of many calls at once (latching happens here, not in XDP).
pub const RECEIVE_BUFFER: usize = 8 << 20;

/// A non-blocking socket bound to `addr` (port 0: the port does not matter, steering delivers
/// by address and range) that reports each datagram's original destination.
pub fn bind_receiver(addr: IpAddr) -> io::Result<UdpSocket> {
    let domain = Domain::for_address(SocketAddr::new(addr, 0));
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    let (level, opt) = match addr {
        IpAddr::V4(_) => (libc::SOL_IP, libc::IP_RECVORIGDSTADDR),
        IpAddr::V6(_) => (libc::SOL_IPV6, libc::IPV6_RECVORIGDSTADDR),
    };
    set_int(sock.as_raw_fd(), level, opt, 1)?;
    // Above net.core.rmem_max only with CAP_NET_ADMIN (SO_RCVBUFFORCE); else as much as allowed.
    if set_int(
        sock.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        RECEIVE_BUFFER as libc::c_int,
    )
    .is_err()
    {
        sock.set_recv_buffer_size(RECEIVE_BUFFER)?;
    }
    sock.bind(&SocketAddr::new(addr, 0).into())?;
    Ok(sock.into())
}

fn set_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: `v` outlives the call and its size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A received datagram: its length in the buffer, its source, and the address:port it was
/// sent to (`None` if the kernel gave none, which a socket from `bind_receiver` always gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub src: SocketAddr,
    pub dst: Option<SocketAddr>,
}

/// One non-blocking `recvmsg` on `sock` (a socket from `bind_receiver`): `WouldBlock` when
/// nothing is queued. A datagram longer than `buf` is cut, as `recv_from` does.
pub fn recv_with_dst(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut name: libc::sockaddr_storage = unsafe { zeroed() };
    // Room for one IP(V6)_ORIGDSTADDR message, u64 for cmsghdr's alignment.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: every pointer in `msg` points at a live local (or `buf`) of the size given.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let src = sockaddr_to_std(&name)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram with no IP source"))?;
    let mut dst = None;
    // SAFETY: the CMSG_* walk stays inside `control` as the kernel filled it (msg_controllen
    // was updated by recvmsg); each header is read only after CMSG_FIRSTHDR/NXTHDR return it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let h = &*c;
            let ours = (h.cmsg_level == libc::SOL_IP && h.cmsg_type == libc::IP_ORIGDSTADDR)
                || (h.cmsg_level == libc::SOL_IPV6 && h.cmsg_type == libc::IPV6_ORIGDSTADDR);
            if ours {
                let data_len = h.cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let mut st: libc::sockaddr_storage = zeroed();
                let len = data_len.min(size_of::<libc::sockaddr_storage>());
                std::ptr::copy_nonoverlapping(
                    libc::CMSG_DATA(c),
                    (&mut st as *mut libc::sockaddr_storage).cast::<u8>(),
                    len,
                );
                dst = sockaddr_to_std(&st);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received {
        len: n as usize,
        src,
        dst,
    })
}

fn sockaddr_to_std(st: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match st.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large
            // enough and aligned for.
            let a = unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Send `payload` to `to` from relay address:port `from`, which no socket holds (steering
/// delivers its traffic elsewhere): a socket is bound there for this one datagram.
/// SO_REUSEADDR lets two sends from the same port overlap. Only packets the controller relays
/// itself (before XDP has the leg) take this path, so its three extra calls are cheap enough.
pub fn send_from(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> io::Result<usize> {
    let sock = Socket::new(Domain::for_address(from), Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    if from.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.bind(&from.into())?;
    sock.send_to(payload, &to.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn wait_recv(sock: &UdpSocket, buf: &mut [u8]) -> Received {
        for _ in 0..200 {
            match recv_with_dst(sock, buf) {
                Ok(r) => return r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        panic!("nothing received");
    }

    #[test]
    fn receives_with_source_and_destination() {
        let rx = bind_receiver(LO).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind((LO, 0)).unwrap();
        tx.send_to(b"hello", to).unwrap();
        let mut buf = [0u8; 64];
        let r = wait_recv(&rx, &mut buf);
        assert_eq!(&buf[..r.len], b"hello");
        assert_eq!(r.src, tx.local_addr().unwrap());
        assert_eq!(r.dst, Some(to));
        let e = recv_with_dst(&rx, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn receives_ipv6_with_destination() {
        let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let rx = bind_receiver(lo6).expect("IPv6 loopback");
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind((lo6, 0)).unwrap();
        tx.send_to(b"six", to).unwrap();
        let mut buf = [0u8; 64];
        let r = wait_recv(&rx, &mut buf);
        assert_eq!(r.dst.map(|d| (d.ip(), d.port())), Some((lo6, to.port())));
        assert_eq!(r.src.port(), tx.local_addr().unwrap().port());
    }

    #[test]
    fn sends_from_a_chosen_port_twice_and_holds_nothing() {
        let rx = UdpSocket::bind((LO, 0)).unwrap();
        // A free port to send from: bind, note, close.
        let from = UdpSocket::bind((LO, 0)).unwrap().local_addr().unwrap();
        for _ in 0..2 {
            send_from(from, rx.local_addr().unwrap(), b"x").unwrap();
            let mut buf = [0u8; 8];
            let (n, src) = rx.recv_from(&mut buf).unwrap();
            assert_eq!((n, src), (1, from));
        }
        // Nothing stays bound there.
        drop(UdpSocket::bind(from).unwrap());
    }
}
