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
        let granted = unsafe {
            libc::fcntl(
                pipe.write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                size as libc::c_int,
            );
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
