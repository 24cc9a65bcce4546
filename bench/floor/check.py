#!/usr/bin/env python3
"""Checks that a SOCKS5 relay loses, adds and reorders no byte.

    bench/floor/check.py --proxy 127.0.0.1:1080 --streams 64 --mib 16

Runs its own targets on 127.0.0.1 and, through the proxy (no
authentication, CONNECT to an IPv4 address), per stream one of:

- echo: writes MIB MiB of a pattern while reading the echo back, then
  half-closes; the echo server passes the EOF on; the stream must read back
  exactly what it wrote, then EOF;
- download: the target writes MIB MiB and closes; the stream must read them
  exactly, then EOF.

Streams alternate between the two. Prints one line per kind with the bytes
and SHA-256 sums compared, and exits 1 on any difference or error. Loopback
only; each stream has a 120 s timeout.
"""

import argparse
import hashlib
import socket
import struct
import sys
import threading
import time

BLOCK = bytes((i * 7919 + (i >> 8) * 31) & 0xFF for i in range(1 << 20))


def pattern(seed, nbytes):
    """The bytes of stream `seed`, as chunks: the block rotated by seed."""
    off = (seed * 4099) % len(BLOCK)
    blk = BLOCK[off:] + BLOCK[:off]
    left = nbytes
    while left > 0:
        n = min(left, len(blk))
        yield blk[:n]
        left -= n


def digest(seed, nbytes):
    h = hashlib.sha256()
    for c in pattern(seed, nbytes):
        h.update(c)
    return h.hexdigest()


def serve(listener, kind, nbytes):
    while True:
        try:
            c, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve_one, args=(c, kind, nbytes), daemon=True).start()


def serve_one(c, kind, nbytes):
    with c:
        if kind == "echo":
            while True:
                b = c.recv(1 << 18)
                if not b:
                    c.shutdown(socket.SHUT_WR)
                    # Wait for the proxy to close its side.
                    while c.recv(1 << 16):
                        pass
                    return
                c.sendall(b)
        else:
            seed = struct.unpack("!I", recv_exact(c, 4))[0]
            for chunk in pattern(seed, nbytes):
                c.sendall(chunk)


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        x = s.recv(n - len(b))
        if not x:
            raise OSError("EOF after %d of %d bytes" % (len(b), n))
        b += x
    return b


def socks_connect(proxy, target):
    s = socket.create_connection(proxy, timeout=120)
    s.sendall(b"\x05\x01\x00")
    if recv_exact(s, 2) != b"\x05\x00":
        raise OSError("method refused")
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(target[0]) + struct.pack("!H", target[1]))
    r = recv_exact(s, 4)
    if r[1] != 0:
        raise OSError("CONNECT refused: reply %02x" % r[1])
    recv_exact(s, {1: 6, 4: 18}[r[3]])
    return s


def read_all(s, h):
    n = 0
    while True:
        b = s.recv(1 << 18)
        if not b:
            return n
        h.update(b)
        n += len(b)


def stream(i, proxy, targets, nbytes, results):
    kind = "echo" if i % 2 == 0 else "download"
    try:
        s = socks_connect(proxy, targets[kind])
        h = hashlib.sha256()
        if kind == "echo":
            got = []

            def reader():
                got.append(read_all(s, h))

            t = threading.Thread(target=reader)
            t.start()
            for chunk in pattern(i, nbytes):
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
            t.join()
            n = got[0] if got else -1
        else:
            s.sendall(struct.pack("!I", i))
            n = read_all(s, h)
        s.close()
        ok = n == nbytes and h.hexdigest() == digest(i, nbytes)
        results[i] = (kind, n, ok, "" if ok else "bytes %d of %d or sum differs" % (n, nbytes))
    except Exception as e:  # noqa: BLE001 - any failure is the stream's result
        results[i] = (kind, 0, False, repr(e))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--proxy", required=True, help="HOST:PORT of the SOCKS5 proxy")
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--mib", type=float, default=64, help="MiB per stream")
    a = ap.parse_args()
    host, port = a.proxy.rsplit(":", 1)
    proxy = (host.strip("[]"), int(port))
    nbytes = int(a.mib * (1 << 20))
    targets = {}
    for kind in ("echo", "download"):
        l = socket.socket()
        l.bind(("127.0.0.1", 0))
        l.listen(1024)
        targets[kind] = l.getsockname()
        threading.Thread(target=serve, args=(l, kind, nbytes), daemon=True).start()
    results = [None] * a.streams
    t0 = time.monotonic()
    ts = [threading.Thread(target=stream, args=(i, proxy, targets, nbytes, results))
          for i in range(a.streams)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.monotonic() - t0
    bad = 0
    for kind in ("echo", "download"):
        rs = [r for r in results if r and r[0] == kind]
        if not rs:
            continue
        fails = [r for r in rs if not r[2]]
        bad += len(fails)
        moved = sum(r[1] for r in rs) * (2 if kind == "echo" else 1)
        print("%s: %d streams, %d bytes relayed, %d wrong%s"
              % (kind, len(rs), moved, len(fails), ": " + fails[0][3] if fails else ""))
    print("%.1f s" % dt)
    return 1 if bad or None in results else 0


if __name__ == "__main__":
    sys.exit(main())
