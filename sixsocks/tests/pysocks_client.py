"""HTTP GET through a SOCKS proxy with PySocks, for sixsocks' end-to-end tests.

usage: pysocks_client.py VERSION PROXY_HOST PROXY_PORT TARGET_HOST TARGET_PORT RDNS [USER [PASSWORD]]

VERSION is 4 or 5; RDNS is 1 to let the proxy resolve TARGET_HOST (SOCKS4a,
SOCKS5 with a domain). Prints the raw HTTP response on stdout; exits 1 with
the error on stderr when the proxy refuses.
"""
import sys

import socks


def main():
    version, phost, pport, thost, tport, rdns = sys.argv[1:7]
    user = sys.argv[7] if len(sys.argv) > 7 else None
    password = sys.argv[8] if len(sys.argv) > 8 else None
    s = socks.socksocket()
    s.set_proxy(
        socks.SOCKS5 if version == "5" else socks.SOCKS4,
        phost,
        int(pport),
        rdns=(rdns == "1"),
        username=user,
        password=password,
    )
    s.settimeout(20)
    try:
        s.connect((thost, int(tport)))
    except (socks.ProxyError, OSError) as e:
        print(f"proxy error: {e!r}", file=sys.stderr)
        sys.exit(1)
    s.sendall(b"GET / HTTP/1.0\r\nHost: " + thost.encode() + b"\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    sys.stdout.buffer.write(data)


if __name__ == "__main__":
    main()
