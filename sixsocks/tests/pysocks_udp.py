"""UDP through a SOCKS5 proxy with PySocks, for sixsocks' end-to-end tests.

usage: pysocks_udp.py PROXY_HOST PROXY_PORT ECHO_HOST ECHO_PORT RDNS COUNT

Opens socks.socksocket(AF_INET, SOCK_DGRAM) with set_proxy(SOCKS5, ...),
which makes PySocks send UDP ASSOCIATE, then sends COUNT datagrams to the
UDP echo server ECHO_HOST:ECHO_PORT through the proxy (RDNS=1: a name goes
to the proxy in the datagram header) and reads each answer back with
recvfrom. Prints one line `OK <i> <from-host> <from-port> <payload>` per
answer; exits 1 with the error on stderr on any failure.
"""
import socket
import sys

import socks


def main():
    phost, pport, ehost, eport, rdns, count = sys.argv[1:7]
    s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    s.set_proxy(socks.SOCKS5, phost, int(pport), rdns=(rdns == "1"))
    s.settimeout(10)
    try:
        for i in range(int(count)):
            payload = ("pysocks udp datagram %d" % i).encode()
            sent = s.sendto(payload, (ehost, int(eport)))
            if sent != len(payload):
                raise RuntimeError("sendto reported %d of %d bytes" % (sent, len(payload)))
            data, (fhost, fport) = s.recvfrom(65535)
            if data != payload:
                raise RuntimeError("echo mismatch: sent %r, got %r" % (payload, data))
            print("OK %d %s %d %s" % (i, fhost, fport, data.decode()), flush=True)
    except (socks.ProxyError, OSError, RuntimeError) as e:
        print("error: %r" % (e,), file=sys.stderr)
        sys.exit(1)
    finally:
        s.close()


if __name__ == "__main__":
    main()
