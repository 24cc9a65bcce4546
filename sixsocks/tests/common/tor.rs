//! A real Tor (`tor` from Debian's package) as an upstream in tests.
//!
//! Shared by the e2e tests (`common::tor`) and, through `#[path]`, by
//! `server/tests/upstream.rs`: it uses nothing but `std`.
//!
//! Tor closes its SocksPort while `DisableNetwork 1` is set (it then opens
//! control listeners only), so it cannot be cut off that way and still be
//! asked. Instead it runs inside a network namespace that has nothing but
//! a loopback interface: it has "network" and no route to anywhere off the
//! machine. [`Tor::start`] refuses to run anywhere else (it checks
//! `/proc/net/dev`). `SocksTimeout 5` makes requests that wait for a
//! circuit (which can never be built) fail after 5 seconds instead of 2
//! minutes.
//!
//! What Tor 0.4.9 answers there, on a SocksPort with `ExtendedErrors`:
//! RESOLVE of a name `04`; CONNECT to a valid v3 onion address `06` (no
//! descriptor within SocksTimeout); to one with a bad checksum `F6` at
//! once (`01` without `ExtendedErrors`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A valid v3 onion address (the Tor Project's: its checksum is right, so
/// Tor waits for a descriptor it cannot fetch, and gives up after
/// SocksTimeout).
pub const ONION_V3: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

/// [`ONION_V3`] with its last character changed: a bad checksum, which Tor
/// refuses at once with `F6` (invalid onion address).
pub const ONION_BAD_CHECKSUM: &str =
    "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wia.onion";

/// The `tor` binary: on `PATH`, or where Debian puts it.
pub fn tor_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("tor"))
        .chain(["/usr/sbin/tor", "/usr/bin/tor"].map(PathBuf::from))
        .find(|p| p.is_file())
}

/// The network interfaces of this process's network namespace.
pub fn interfaces() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect()
}

/// A Tor child process, killed (by its PID) on drop, with its data
/// directory.
pub struct Tor {
    child: Child,
    /// Its SocksPort (with `ExtendedErrors`) on 127.0.0.1.
    pub socks: SocketAddr,
    dir: PathBuf,
}

impl Tor {
    /// Start `bin` with a private data directory (mode 0700) and its
    /// SocksPort on a free loopback port; wait (bounded) until the port
    /// accepts. Panics outside a loopback-only network namespace.
    pub fn start(bin: &Path) -> Tor {
        let ifaces = interfaces();
        assert!(
            ifaces == ["lo"],
            "refusing to start tor outside a loopback-only network namespace \
             (interfaces: {ifaces:?})"
        );
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sixsocks-tor-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let private = || std::fs::Permissions::from_mode(0o700);
            std::fs::set_permissions(&dir, private()).unwrap();
            std::fs::set_permissions(&data, private()).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let socks = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let torrc = dir.join("torrc");
        std::fs::write(
            &torrc,
            format!(
                "DataDirectory {}\n\
                 SocksPort {socks} ExtendedErrors\n\
                 SocksTimeout 5\n\
                 Log notice stderr\n\
                 AvoidDiskWrites 1\n\
                 ControlPort 0\n",
                data.display()
            ),
        )
        .unwrap();
        // No system-wide defaults (Debian's may name other ports).
        let defaults = dir.join("torrc-defaults");
        std::fs::write(&defaults, "").unwrap();
        let child = Command::new(bin)
            .arg("-f")
            .arg(&torrc)
            .arg("--defaults-torrc")
            .arg(&defaults)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("tor.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut tor = Tor { child, socks, dir };
        let start = Instant::now();
        loop {
            if std::net::TcpStream::connect(socks).is_ok() {
                return tor;
            }
            if let Ok(Some(status)) = tor.child.try_wait() {
                panic!(
                    "tor exited ({status}) before its SocksPort opened:\n{}",
                    tor.log()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tor's SocksPort {socks} did not open within 30 s:\n{}",
                tor.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What Tor logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tor.log")).unwrap_or_default()
    }
}

impl Drop for Tor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- tor log ---\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
