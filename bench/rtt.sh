#!/usr/bin/env bash
# bench/rtt.sh: time to the first response byte, and the round trips it
# takes, over a slow client–proxy link (issue 14), in one run:
#
#   direct HTTP GET; curl over SOCKS5 to sixsocks (with and without a
#   password) and to danted; the SOCKS 6 client library to sixsocks, without
#   and with TCP Fast Open + a token; curl (SOCKS5) → a local sixsocks
#   gateway → SOCKS 6 → the far sixsocks, optimistic (with and without a
#   password at the far end) and strict.
#
# The slow link is user space (this kernel has no netem): a TUN device in a
# network namespace of our own, whose every packet bench/tun_delay.py holds
# RTT/2 and sends back to us (the far side is reached at 10.77.0.2); the
# proxy–target leg and the application–gateway leg are loopback. The
# target is a one-file HTTP server. Each case runs WARMUP unmeasured times
# (TFO cookies, sessions, token windows), then REPS measured; the table
# gives the median in ms and, in brackets, that divided by the RTT, rounded
# (the turns: the TCP handshake counts as one).
#
# Usage: bench/rtt.sh [--rtts "50 200 600"] [--reps 3] [--out DIR]
# Needs root (a network namespace), python3, curl, danted, /dev/net/tun.
# Writes DIR/rtt.md, DIR/rtt.json and DIR/rtt.svg (with matplotlib).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RTTS="50 200 600"
REPS=3
WARMUP=2
OUT=
while [ $# -gt 0 ]; do
    case "$1" in
    --rtts) RTTS=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --inner) break ;;
    *) echo "rtt.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "${1:-}" != --inner ]; then
    OUT=${OUT:-$ROOT/target/bench/rtt-$(date -u +%Y%m%d-%H%M%S)}
    mkdir -p "$OUT"
    for tool in python3 curl danted unshare ip; do
        command -v "$tool" >/dev/null || { echo "rtt.sh: $tool is missing" >&2; exit 1; }
    done
    [ -e /dev/net/tun ] || { echo "rtt.sh: /dev/net/tun is missing" >&2; exit 1; }
    (cd "$ROOT" && cargo build --release -q -p sixsocks -p sixsocks-bench)
    exec unshare -n -- bash "$0" --inner "$OUT" "$RTTS" "$REPS" "$WARMUP"
fi

OUT=$2
RTTS=$3
REPS=$4
WARMUP=$5
BIN=$ROOT/target/release/sixsocks
BENCH=$ROOT/target/release/sixsocks-bench
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

VIA=10.77.0.2
ip link set lo up
sysctl -qw net.ipv4.tcp_fastopen=0x403
echo "hello from the target" >"$WORK/index.html"

start() { # NAME CMD...: start in the background, remember the PID
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
}
wait_port() { "$BENCH" wait-port "$1" --timeout 10; }

start http python3 -m http.server --bind 0.0.0.0 8000 --directory "$WORK"
echo s3cret | "$BIN" passwd --users-file "$WORK/users" alice >/dev/null
start far "$BIN" serve --listen 0.0.0.0:1080 --allow-open-proxy
start far-auth "$BIN" serve --listen 0.0.0.0:1081 --users-file "$WORK/users"
cat >"$WORK/danted.conf" <<EOF
logoutput: $WORK/danted-internal.log
internal: 0.0.0.0 port = 1082
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
    from: 0.0.0.0/0 to: 0.0.0.0/0
    log: error
}
socks pass {
    from: 0.0.0.0/0 to: 0.0.0.0/0
    command: connect
    log: error
}
EOF
start danted danted -f "$WORK/danted.conf" -p "$WORK/danted.pid"
start gw-opt "$BIN" gateway --listen 127.0.0.1:2080 --upstream "socks6://$VIA:1080"
start gw-opt-auth "$BIN" gateway --listen 127.0.0.1:2081 --upstream "socks6://alice:s3cret@$VIA:1081"
start gw-strict "$BIN" gateway --listen 127.0.0.1:2082 --upstream "socks6://$VIA:1080" --mode strict
for p in 127.0.0.1:8000 127.0.0.1:1080 127.0.0.1:1081 127.0.0.1:1082 127.0.0.1:2080 127.0.0.1:2081 127.0.0.1:2082; do
    wait_port "$p"
done

TARGET=http://127.0.0.1:8000/
curl_ms() { # curl ARGS...: ms to the first response byte
    curl -s -o /dev/null --max-time 30 -w '%{time_starttransfer}\n' "$@" | awk '{ printf "%.1f\n", $1 * 1000 }'
}
case_ms() { # NAME: one measurement, in ms
    case "$1" in
    direct) curl_ms "http://$VIA:8000/" ;;
    socks5-sixsocks) curl_ms --socks5-hostname "$VIA:1080" "$TARGET" ;;
    socks5-sixsocks-password) curl_ms --socks5-hostname "$VIA:1081" -U alice:s3cret "$TARGET" ;;
    socks5-danted) curl_ms --socks5-hostname "$VIA:1082" "$TARGET" ;;
    socks6-client) "$BENCH" ttfb --proxy "socks6://$VIA:1080" --target 127.0.0.1:8000 --warmup 0 --reps 1 ;;
    socks6-client-tfo) "$BENCH" ttfb --proxy "socks6://$VIA:1080" --target 127.0.0.1:8000 --tfo --warmup 2 --reps 1 ;;
    gateway-optimistic) curl_ms --socks5-hostname 127.0.0.1:2080 "$TARGET" ;;
    gateway-optimistic-password) curl_ms --socks5-hostname 127.0.0.1:2081 "$TARGET" ;;
    gateway-strict) curl_ms --socks5-hostname 127.0.0.1:2082 "$TARGET" ;;
    esac
}
CASES="direct socks5-sixsocks socks5-sixsocks-password socks5-danted socks6-client socks6-client-tfo gateway-optimistic gateway-optimistic-password gateway-strict"

RESULTS=$WORK/results.tsv
: >"$RESULTS"
for rtt in $RTTS; do
    delay=$(awk -v r="$rtt" 'BEGIN { printf "%.4f", r / 2000 }')
    # A TUN device whose program holds each packet RTT/2 each way.
    coproc TUN { exec python3 "$ROOT/bench/tun_delay.py" s6rtt0 "$delay"; }
    PIDS+=($TUN_PID)
    read -r ready <&"${TUN[0]}"
    [ "$ready" = ready ] || { echo "rtt.sh: the delay program did not start" >&2; exit 1; }
    ip addr add 10.77.0.1/32 dev s6rtt0
    ip link set s6rtt0 up
    ip route add "$VIA/32" dev s6rtt0
    for c in $CASES; do
        for _ in $(seq "$WARMUP"); do case_ms "$c" >/dev/null || true; done
        for _ in $(seq "$REPS"); do
            ms=$(case_ms "$c" || echo nan)
            printf '%s\t%s\t%s\n' "$rtt" "$c" "$ms" >>"$RESULTS"
        done
        echo "rtt $rtt ms: $c done" >&2
    done
    kill "$TUN_PID" 2>/dev/null || true
    wait "$TUN_PID" 2>/dev/null || true
done
python3 "$ROOT/bench/rtt_report.py" "$RESULTS" "$OUT"
