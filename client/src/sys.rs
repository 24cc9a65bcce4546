//! The OS calls SOCKS 6 needs that have no safe wrapper in socket2 0.5:
//! turning on `TCP_FASTOPEN_CONNECT` and reading `TCP_INFO`. This is the only
//! module of the crate with `unsafe`.
//!
//! Every block passes a file descriptor the caller owns (the raw fd of a
//! live socket, borrowed for the duration of the call) and pointers to
//! locals of the exact size given to the kernel.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// Turn on TCP_FASTOPEN_CONNECT (Linux ≥ 4.11) before `connect`: `connect`
/// then returns at once when the kernel holds a Fast Open cookie for the
/// peer, and the first write carries its data in the SYN; without a cookie
/// it is an ordinary handshake that asks for one.
pub(crate) fn set_tcp_fastopen_connect(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a descriptor the caller owns, with a pointer to
    // a local c_int and its exact size; the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_FASTOPEN_CONNECT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `tcpi_options` bit: the SYN carried data and the peer acknowledged it
/// (client side), or the connection was accepted with data in its SYN
/// (server side).
pub(crate) const TCPI_OPT_SYN_DATA: u8 = 0x20;

/// The `tcpi_options` byte of `TCP_INFO` (offset 5 of `struct tcp_info`,
/// stable since the structure's first version).
pub(crate) fn tcp_info_options(fd: RawFd) -> io::Result<u8> {
    // The kernel copies min(len, sizeof(struct tcp_info)) bytes, so asking
    // for the first 8 is allowed and never writes past them.
    let mut head = [0u8; 8];
    let mut len = head.len() as libc::socklen_t;
    // SAFETY: getsockopt on a descriptor the caller owns; `head` is a local
    // buffer of `len` bytes and `len` a local the kernel updates.
    let r = unsafe {
        libc::getsockopt(
            fd,
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
