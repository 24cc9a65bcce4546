//! The OS calls the relay needs that have no safe wrapper: pipe2(2),
//! splice(2) and F_SETPIPE_SZ. This is the only module with `unsafe`.
//!
//! Every block passes file descriptors that the caller owns (an `OwnedFd`
//! or a live `TcpStream`'s raw fd, borrowed for the duration of the call)
//! and no pointers besides the out-array of `pipe2`, which is a local.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A pipe: the read end and the write end.
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
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
            }
        };
        // SAFETY: fcntl on a descriptor we own, with an integer argument.
        unsafe {
            libc::fcntl(
                pipe.write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                size as libc::c_int,
            );
        }
        Ok(pipe)
    }
}

/// splice(2) up to `len` bytes from `from` to `to`, non-blocking. One of
/// them must be a pipe. Returns the bytes moved (0 at EOF of `from`).
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (the
    // callers hold the owning objects); null offsets mean "use the file
    // position", which sockets and pipes require.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
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

/// Turn on TCP_FASTOPEN_CONNECT (Linux ≥ 4.11): `connect` then returns at
/// once and the first write carries its data in the SYN when the kernel
/// holds a Fast Open cookie for the peer (else it is an ordinary handshake).
pub fn set_tcp_fastopen_connect(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a descriptor the caller owns, with a pointer to
    // a local c_int and its exact size.
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
