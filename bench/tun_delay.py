#!/usr/bin/env python3
"""A slow link in user space (this kernel has no netem): a TUN device whose
every IPv4 packet is held DELAY seconds and sent back with its source and
destination swapped (no checksum changes), so that a host reaching the
TUN's peer address reaches itself through a path of 2 x DELAY round trip.
Usage: tun_delay.py IFNAME DELAY. Prints "ready" once the device exists.
Used by client/tests/socks6_net.rs and bench/rtt.sh."""
import fcntl, heapq, os, select, struct, sys, time
TUNSETIFF = 0x400454ca
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
name, delay = sys.argv[1].encode(), float(sys.argv[2])
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name, IFF_TUN | IFF_NO_PI))
print("ready", flush=True)
queue, n = [], 0
while True:
    wait = max(queue[0][0] - time.monotonic(), 0) if queue else None
    readable, _, _ = select.select([fd], [], [], wait)
    if readable:
        p = bytearray(os.read(fd, 65536))
        if len(p) >= 20 and p[0] >> 4 == 4:
            p[12:16], p[16:20] = p[16:20], p[12:16]
            n += 1
            heapq.heappush(queue, (time.monotonic() + delay, n, bytes(p)))
    now = time.monotonic()
    while queue and queue[0][0] <= now:
        os.write(fd, heapq.heappop(queue)[2])
