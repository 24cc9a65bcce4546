//! The OS calls sixsocks needs that have no safe wrapper in its
//! dependencies: pipe2(2), splice(2) and F_SETPIPE_SZ for the relay, and the
//! TCP Fast Open socket options and `TCP_INFO` for SOCKS 6. This crate is
//! the only place in the project with `unsafe`.
//!
//! Every block passes file descriptors that are open for the whole call
//! (the wrappers take `impl AsFd`: the borrow keeps the descriptor alive)
//! and pointers only to locals of the exact size given to the kernel.
//! Linux only.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// A pipe: the read end and the write end, and its capacity in bytes.
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
    /// What the kernel granted (F_GETPIPE_SZ): less than asked for when the
    /// user is over `fs.pipe-user-pages-soft` (then a single page or two).
    pub capacity: usize,
}

/// The capacity the kernel gives a new pipe (16 pages of 4 KiB).
const DEFAULT_PIPE_SIZE: usize = 64 * 1024;

impl Pipe {
    /// A new non-blocking, close-on-exec pipe, grown to `size` bytes if the
    /// kernel allows (it rounds to pages; failure to grow is not an error).
    pub fn new(size: usize) -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid, writable array of two c_ints, as
        // pipe2(2) requires; on success both entries are fresh descriptors
        // that nothing else owns, so wrapping them in OwnedFd is sound.
        let pipe = unsafe {
            if libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) != 0 {
                return Err(io::Error::last_os_error());
            }
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
                capacity: 0,
            }
        };
        let mut pipe = pipe;
        // SAFETY: fcntl on a descriptor we own, with an integer argument
        // (F_SETPIPE_SZ) or none (F_GETPIPE_SZ).
        // The kernel's default is 16 pages (64 KiB; one page past the user's
        // soft limit, which asking cannot change): only a larger size is asked for.
        let granted = unsafe {
            if size > DEFAULT_PIPE_SIZE {
                libc::fcntl(
                    pipe.write.as_raw_fd(),
                    libc::F_SETPIPE_SZ,
                    size as libc::c_int,
                );
            }
            libc::fcntl(pipe.write.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        pipe.capacity = usize::try_from(granted).unwrap_or(0);
        Ok(pipe)
    }
}

/// splice(2) up to `len` bytes from `from` to `to`, non-blocking. One of
/// them must be a pipe. Returns the bytes moved (0 at EOF of `from`).
pub fn splice(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    let (from, to) = (from.as_fd(), to.as_fd());
    // SAFETY: both descriptors are borrowed, so open for the duration of
    // the call; null offsets mean "use the file position", which sockets
    // and pipes require.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Turn on TCP_FASTOPEN_CONNECT (Linux ≥ 4.11) before `connect`: `connect`
/// then returns at once when the kernel holds a Fast Open cookie for the
/// peer, and the first write carries its data in the SYN; without a cookie
/// it is an ordinary handshake that asks for one.
pub fn set_tcp_fastopen_connect(fd: impl AsFd) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_FASTOPEN_CONNECT, 1)
}

/// Set an integer socket option.
fn setsockopt_int(
    fd: impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt on a descriptor borrowed for the call, with a pointer to
    // a local c_int and its exact size; the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Forbid fragmentation on an outgoing socket: path MTU discovery with the
/// DF bit set (IPv4, `IP_MTU_DISCOVER = IP_PMTUDISC_DO`) or never
/// fragmenting locally (IPv6, `IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DO`).
pub fn set_dont_fragment(fd: impl AsFd, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        setsockopt_int(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    } else {
        setsockopt_int(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    }
}

/// `tcpi_options` bit: the SYN carried data and the peer acknowledged it
/// (client side), or the connection was accepted with data in its SYN
/// (server side).
pub const TCPI_OPT_SYN_DATA: u8 = 0x20;

/// The `tcpi_options` byte of `TCP_INFO` (offset 5 of `struct tcp_info`,
/// stable since the structure's first version).
pub fn tcp_info_options(fd: impl AsFd) -> io::Result<u8> {
    // The kernel copies min(len, sizeof(struct tcp_info)) bytes, so asking
    // for the first 8 is allowed and never writes past them.
    let mut head = [0u8; 8];
    let mut len = head.len() as libc::socklen_t;
    // SAFETY: getsockopt on a descriptor borrowed for the call; `head` is a local
    // buffer of `len` bytes and `len` a local the kernel updates.
    let r = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            head.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < 6 {
        return Err(io::Error::other("TCP_INFO shorter than 6 bytes"));
    }
    Ok(head[5])
}

/// Turn on TCP Fast Open on a listening socket (before `listen`), with a
/// queue of `qlen` pending Fast Open requests. Clients that hold a cookie
/// may then put data in their SYN, which the kernel queues for `accept`.
pub fn set_tcp_fastopen_listen(fd: impl AsFd, qlen: i32) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_FASTOPEN, qlen)
}

/// Queue ICMP errors for a UDP socket (`IP_RECVERR` / `IPV6_RECVERR`):
/// each error that arrives for a datagram it sent can then be read with
/// [`recv_icmp_error`], with the datagram's destination and the host that
/// reported it.
pub fn set_recv_errors(fd: impl AsFd, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_RECVERR, 1)
    }
}

/// One ICMP error from a socket's error queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    /// Where the datagram that caused it was going.
    pub dest: std::net::SocketAddr,
    /// The host that sent the ICMP message, if the kernel says.
    pub reporter: Option<std::net::IpAddr>,
    /// ICMPv6 (`true`) or ICMP.
    pub icmp6: bool,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

/// A `sockaddr` of `len` bytes at `sa` as an address (IPv4 or IPv6 only).
///
/// # Safety
/// `sa` must point to at least `len` readable bytes.
unsafe fn socket_addr(sa: *const libc::sockaddr, len: usize) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    // SAFETY (of each read below): the caller guarantees `len` bytes, and
    // each read is checked against `len` for its structure's size;
    // read_unaligned because control data need not be aligned for it.
    match (*sa).sa_family as libc::c_int {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            let a = std::ptr::read_unaligned(sa.cast::<libc::sockaddr_in>());
            Some(SocketAddr::from((
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            let a = std::ptr::read_unaligned(sa.cast::<libc::sockaddr_in6>());
            Some(SocketAddr::from((
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
            )))
        }
        _ => None,
    }
}

/// Take one ICMP error from the socket's error queue (`MSG_ERRQUEUE`,
/// never blocking): an error of kind `WouldBlock` when the queue is
/// empty, `Ok(None)` when what was queued was no ICMP error (it is
/// consumed all the same).
pub fn recv_icmp_error(fd: impl AsFd) -> io::Result<Option<IcmpError>> {
    // SAFETY: all-zero is a valid value of these plain C structures.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut data = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // u64s: the control buffer is aligned for `cmsghdr`.
    let mut control = [0u64; 64];
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg on a descriptor borrowed for the call; every pointer in
    // `msg` is to a local that outlives the call, with its exact size.
    let n = unsafe {
        libc::recvmsg(
            fd.as_fd().as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel wrote `msg_namelen` bytes of `name`.
    let dest = unsafe {
        socket_addr(
            (&name as *const libc::sockaddr_storage).cast(),
            msg.msg_namelen as usize,
        )
    };
    let Some(dest) = dest else {
        return Ok(None);
    };
    // SAFETY: the CMSG_* helpers walk the control data the kernel wrote
    // (`msg_controllen` bytes of `control`, which `msg` points to); each
    // header's data is read only within its `cmsg_len`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let level = (*c).cmsg_level;
            let ty = (*c).cmsg_type;
            let is_err = (level == libc::SOL_IP && ty == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && ty == libc::IPV6_RECVERR);
            let header = libc::CMSG_LEN(0) as usize;
            let len = ((*c).cmsg_len as usize).saturating_sub(header);
            if is_err && len >= std::mem::size_of::<libc::sock_extended_err>() {
                let ee_ptr = libc::CMSG_DATA(c).cast::<libc::sock_extended_err>();
                let ee = std::ptr::read_unaligned(ee_ptr);
                let icmp6 = match ee.ee_origin {
                    libc::SO_EE_ORIGIN_ICMP => false,
                    libc::SO_EE_ORIGIN_ICMP6 => true,
                    _ => return Ok(None),
                };
                let after = std::mem::size_of::<libc::sock_extended_err>();
                let reporter = socket_addr(libc::SO_EE_OFFENDER(ee_ptr).cast_const(), len - after)
                    .map(|a| a.ip());
                return Ok(Some(IcmpError {
                    dest,
                    reporter,
                    icmp6,
                    icmp_type: ee.ee_type,
                    icmp_code: ee.ee_code,
                }));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod icmp_tests {
    use super::*;

    /// A datagram to a closed port on loopback comes back as ICMP port
    /// unreachable in the error queue, with its destination.
    #[test]
    fn a_closed_port_on_loopback_queues_port_unreachable() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = closed.local_addr().unwrap();
        drop(closed);
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        set_recv_errors(&s, false).unwrap();
        s.send_to(b"x", dest).unwrap();
        let mut got = None;
        for _ in 0..100 {
            // Reading the pending error (ECONNREFUSED) first is what a
            // relay's receive does; the queue keeps the details.
            let mut b = [0u8; 8];
            s.set_nonblocking(true).unwrap();
            let _ = s.recv_from(&mut b);
            if let Ok(Some(e)) = recv_icmp_error(&s) {
                got = Some(e);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let e = got.expect("an ICMP error within a second");
        assert_eq!(e.dest, dest);
        assert!(!e.icmp6);
        assert_eq!((e.icmp_type, e.icmp_code), (3, 3), "port unreachable");
        assert_eq!(e.reporter, Some("127.0.0.1".parse().unwrap()));
        let empty = recv_icmp_error(&s).unwrap_err();
        assert_eq!(
            empty.kind(),
            io::ErrorKind::WouldBlock,
            "the queue is empty now"
        );
    }
}
