#!/usr/bin/env bash
# bench/run.sh: sixsocks against a direct connection, the floor relay
# (bench/floor/), danted and microsocks, interleaved, each run in a network
# namespace of its own. See bench/README.md.
#
#   bench/run.sh              full run (about 20 minutes on 2 cores)
#   bench/run.sh --smoke      every mode once, very briefly (a harness check for CI)
#
# Options:
#   --reps N            repetitions of the round robin (default 3; --smoke: 1)
#   --peers "LIST"      subset of: direct floor sixsocks danted microsocks sixsocks6
#                       sixsocks6-11 sixsocks6-207 (sixsocks spoken to in SOCKS 6:
#                       draft -05, -11, the reference dialect; connrate only)
#   --modes "LIST"      subset of: throughput connrate pingpong idle
#   --streams "LIST"    throughput stream counts (default "1 8 64 1000"; --smoke "1 8")
#   --out DIR           where results go (default target/bench/DATE)
#   --debug | --release cargo profile (default: release; --smoke: debug)
#   --floor-threads N   worker threads of the floor relay (default: the cores)
#   --cc "LIST"         congestion controls the cases of 64 streams and more
#                       run under, each a case of its own (default: "bbr
#                       cubic", those the kernel has; --smoke: the default)
#   --charts            SVG charts must be drawn (matplotlib missing: fail)
#   --no-charts         draw no charts (default: draw them if matplotlib is there)
#   --no-netns          do not make network namespaces (not root, or no unshare)
#   --no-build          use the binaries already built
#   --baseline BIN      also run BIN (another build of sixsocks) as the peer
#                       "sixsocks-base", interleaved with the others: an A/B
#                       of a change in one run (add it to --peers if given)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/bench/run.sh"
PORT=10800

say() { printf '%s\n' "$*" >&2; }
loud() { printf '\n*** %s\n\n' "$*" >&2; }

# ---------------------------------------------------------------------------
# Inner part: runs inside the namespace. Starts one peer, runs one case of the
# load generator against it, stops the peer by its PID. The JSON line of the
# load generator goes to stdout.
# ---------------------------------------------------------------------------
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid still alive 5 s after SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

inner() {
    local peer=$1 port=$PORT
    shift
    if [ "${BENCH_NETNS:-1}" = 1 ]; then
        ip link set lo up
        # The congestion control is per namespace: a case may name one.
        if [ -n "${BENCH_CC:-}" ]; then
            sysctl -qw net.ipv4.tcp_congestion_control="$BENCH_CC" ||
                { say "cannot set the congestion control $BENCH_CC"; return 2; }
        fi
    fi
    # 10,000 relayed connections need 20,000 descriptors in the proxy and as
    # many in the load generator (its client ends and its target ends).
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    local pid
    case "$peer" in
    direct)
        exec "$BENCH_BIN" "$@" --direct --label direct
        ;;
    sixsocks | sixsocks-base | sixsocks6 | sixsocks6-11 | sixsocks6-207)
        if [ "$peer" = sixsocks-base ]; then
            SIXSOCKS_BIN=$BASELINE_BIN
        fi
        if [ "$1" = idle ]; then
            # Memory per idle connection: the server as a user starts it,
            # no flags at all (127.0.0.1:1080, max_clients derived from the
            # descriptor limit); the load generator spreads its clients over
            # source addresses (--sources) below the per-address caps.
            port=1080
            "$SIXSOCKS_BIN" serve >"$BENCH_WORK/sixsocks.log" 2>&1 &
        else
            # Every load comes from 127.0.0.1: the per-address caps (512
            # connections, 64 handshakes by default) would refuse the
            # 1,000-stream case; the peers have no such caps either.
            "$SIXSOCKS_BIN" serve --listen "127.0.0.1:$PORT" --idle-timeout 0 --max-clients 30000 \
                --max-clients-per-address 30000 --max-handshakes-per-address 30000 \
                >"$BENCH_WORK/sixsocks.log" 2>&1 &
        fi
        pid=$!
        ;;
    danted)
        cat >"$BENCH_WORK/danted.conf" <<EOF
logoutput: $BENCH_WORK/danted.log
internal: 127.0.0.1 port = $PORT
external: 127.0.0.2
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
timeout.negotiate: 30
timeout.io: 0
client pass {
    from: 127.0.0.0/8 to: 0.0.0.0/0
    log: error
}
socks pass {
    from: 127.0.0.0/8 to: 0.0.0.0/0
    command: connect
    log: error
}
EOF
        # Not -D: the PID we hold is the mother, whose children follow it.
        danted -f "$BENCH_WORK/danted.conf" -p "$BENCH_WORK/danted.pid" \
            >>"$BENCH_WORK/danted.out" 2>&1 &
        pid=$!
        ;;
    floor)
        # The floor relay: epoll and splice, nothing else (bench/floor/floor.c).
        "$FLOOR_BIN" -l "127.0.0.1:$PORT" -t "$FLOOR_THREADS" >"$BENCH_WORK/floor.log" 2>&1 &
        pid=$!
        ;;
    microsocks)
        # It logs every connection and cannot be silenced.
        microsocks -i 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
        pid=$!
        ;;
    *)
        say "unknown peer $peer"
        return 2
        ;;
    esac
    if ! "$BENCH_BIN" wait-port "127.0.0.1:$port" --timeout 10; then
        say "$peer did not start listening on 127.0.0.1:$port (logs in $BENCH_WORK)"
    fi
    local rc=0
    if [ "${peer#sixsocks6}" != "$peer" ]; then
        # The same server, spoken to in SOCKS 6; its rows are cases of
        # their own ("…, SOCKS 6 0-RTT", "…, SOCKS 6 -11 0-RTT", "…, SOCKS 6
        # ref-207 0-RTT") under sixsocks's label.
        local profile=draft-05
        case "$peer" in
        sixsocks6-11) profile=draft-11 ;;
        sixsocks6-207) profile=ref-207 ;;
        esac
        "$BENCH_BIN" "$@" --socks6 "127.0.0.1:$PORT" --socks6-profile "$profile" \
            --proxy-pid "$pid" --label sixsocks || rc=$?
    else
        "$BENCH_BIN" "$@" --proxy "127.0.0.1:$port" --proxy-pid "$pid" --label "$peer" || rc=$?
    fi
    stop_pid "$pid"
    return $rc
}

if [ "${1:-}" = "--inner" ]; then
    shift
    inner "$@"
    exit $?
fi

# ---------------------------------------------------------------------------
# Outer part: options, build, peers, the interleaved loop, the report.
# ---------------------------------------------------------------------------
SMOKE=0
REPS=
PEERS="direct floor sixsocks danted microsocks sixsocks6 sixsocks6-11 sixsocks6-207"
MODES="throughput connrate pingpong idle"
OUT=
PROFILE=
NETNS=1
BUILD=1
FLOOR_THREADS=$(nproc)
CHARTS=auto
CCS=
STREAMS_SET=
BASELINE=
ARGS_SEEN=$(printf "%s " "$@")
while [ $# -gt 0 ]; do
    case "$1" in
    --smoke) SMOKE=1 ;;
    --reps) REPS=$2; shift ;;
    --peers) PEERS=$2; shift ;;
    --modes) MODES=$2; shift ;;
    --out) OUT=$2; shift ;;
    --debug) PROFILE=debug ;;
    --release) PROFILE=release ;;
    --no-netns) NETNS=0 ;;
    --no-build) BUILD=0 ;;
    --floor-threads) FLOOR_THREADS=$2; shift ;;
    --cc) CCS=$2; shift ;;
    --streams) STREAMS_SET=$2; shift ;;
    --baseline) BASELINE=$2; shift ;;
    --charts) CHARTS=yes ;;
    --no-charts) CHARTS=no ;;
    -h | --help)
        sed -n '2,25p' "$SELF" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        say "unknown option $1 (see --help)"
        exit 2
        ;;
    esac
    shift
done
if [ "$SMOKE" = 1 ]; then
    REPS=${REPS:-1}
    PROFILE=${PROFILE:-debug}
else
    REPS=${REPS:-3}
    PROFILE=${PROFILE:-release}
fi
OUT=${OUT:-$ROOT/target/bench/$(date -u +%Y%m%d-%H%M%S)$(if [ "$SMOKE" = 1 ]; then echo -smoke; fi)}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

cd "$ROOT"
# sixsocks itself is built (and needed) only when a peer runs it.
crates=(-p sixsocks-bench)
case " $PEERS " in *" sixsocks"*) crates+=(-p sixsocks) ;; esac
if [ "$BUILD" = 1 ]; then
    if [ "$PROFILE" = release ]; then
        cargo build --release "${crates[@]}" >&2
    else
        cargo build "${crates[@]}" >&2
    fi
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-$ROOT/target}
export BENCH_BIN="$TARGET_DIR/$PROFILE/sixsocks-bench"
export SIXSOCKS_BIN="$TARGET_DIR/$PROFILE/sixsocks"
bins=("$BENCH_BIN")
case " ${crates[*]} " in *" sixsocks "*) bins+=("$SIXSOCKS_BIN") ;; esac
for b in "${bins[@]}"; do
    [ -x "$b" ] || { say "missing $b: build it (or drop --no-build)"; exit 1; }
done
if [ -n "$BASELINE" ]; then
    [ -x "$BASELINE" ] || { say "--baseline $BASELINE: not an executable"; exit 1; }
    BASELINE_BIN=$(cd "$(dirname "$BASELINE")" && pwd)/$(basename "$BASELINE")
    export BASELINE_BIN
    case " $PEERS " in *" sixsocks-base "*) ;; *) PEERS="$PEERS sixsocks-base" ;; esac
fi

# The floor relay: one C file, always -O2 (whatever the cargo profile).
export FLOOR_BIN="$TARGET_DIR/floor/floor" FLOOR_THREADS
FLOOR_CC=
case " $PEERS " in *" floor "*)
    if [ "$BUILD" = 1 ] || [ ! -x "$FLOOR_BIN" ]; then
        if command -v gcc >/dev/null; then
            mkdir -p "$(dirname "$FLOOR_BIN")"
            gcc -O2 -Wall -Wextra -Werror -o "$FLOOR_BIN" bench/floor/floor.c -lpthread >&2 ||
                { say "the floor relay did not build (bench/floor/floor.c)"; exit 1; }
            FLOOR_CC="gcc $(gcc -dumpfullversion 2>/dev/null || gcc -dumpversion) -O2"
        else
            loud "gcc is missing: the floor relay cannot be built. Install it with (as root): apt-get install gcc libc6-dev"
            if [ -n "${CI:-}" ]; then
                exit 1
            fi
            PEERS=$(echo " $PEERS " | sed "s/ floor / /")
            loud "going on without it: $PEERS"
        fi
    fi
    ;;
esac

# The peers come from Debian's packages.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
need_pkgs=()
case " $PEERS " in *" danted "*) have danted || need_pkgs+=(dante-server) ;; esac
case " $PEERS " in *" microsocks "*) have microsocks || need_pkgs+=(microsocks) ;; esac
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing ${need_pkgs[*]} (Debian packages)"
        apt-get update -qq >&2
        # The package's own service may fail to start without systemd: harmless here.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >&2 || true
    fi
    PATH="$PATH:/usr/sbin"
    missing=()
    have danted || case " $PEERS " in *" danted "*) missing+=(danted) ;; esac
    have microsocks || case " $PEERS " in *" microsocks "*) missing+=(microsocks) ;; esac
    if [ ${#missing[@]} -gt 0 ]; then
        loud "peers missing: ${missing[*]}. Install them with (as root): apt-get install dante-server microsocks"
        if [ -n "${CI:-}" ]; then
            exit 1
        fi
        for m in "${missing[@]}"; do PEERS=$(echo " $PEERS " | sed "s/ $m / /"); done
        loud "going on without them: $PEERS"
    fi
fi
PATH="$PATH:/usr/sbin"

if [ "$NETNS" = 1 ] && ! unshare -n true 2>/dev/null; then
    loud "cannot make a network namespace (unshare -n needs root): running without (TIME_WAIT sockets of one run will slow the next)"
    NETNS=0
fi
export BENCH_NETNS=$NETNS

# The cases, as load-generator arguments.
if [ "$SMOKE" = 1 ]; then
    # Long enough that one TCP retransmission timeout (200 ms at least) on
    # one stream is not "moved nothing in the whole window": at 0.15 s, CI
    # failed on such a 139 ms gap (1 of 8 upload streams) in 2 of 5 runs.
    T="--warmup 0.1 --duration 0.6"
    STREAMS="1 8"
    WORKERS="1 32"
    PINGS=300
    IDLE="100"
else
    T="--warmup 0.5 --duration 3"
    STREAMS="1 8 64 1000"
    WORKERS="1 32"
    PINGS=20000
    IDLE="1000 10000"
fi
STREAMS=${STREAMS_SET:-$STREAMS}
# The congestion controls the many-stream cases run under: BBR on loopback
# sometimes collapses one stream after spurious retransmits, cubic does
# not; running both tells that apart from a relay starving a stream.
CC_DEFAULT=$(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown)
if [ -z "$CCS" ]; then
    if [ "$SMOKE" = 1 ] || [ "$NETNS" = 0 ]; then
        CCS=$CC_DEFAULT
    else
        CCS=
        for cc in bbr cubic; do
            if grep -qw "$cc" /proc/sys/net/ipv4/tcp_available_congestion_control 2>/dev/null ||
                modprobe -q "tcp_$cc" 2>/dev/null; then
                CCS="$CCS $cc"
            fi
        done
        CCS=${CCS# }
        CCS=${CCS:-$CC_DEFAULT}
    fi
fi
# Outside the first namespace, only the congestion controls listed in
# net.ipv4.tcp_allowed_congestion_control (a global setting) may be made a
# namespace's default: add the missing ones (this lets unprivileged
# programs choose them too, nothing more).
if [ "$NETNS" = 1 ]; then
    allowed=$(cat /proc/sys/net/ipv4/tcp_allowed_congestion_control 2>/dev/null || true)
    add=
    for cc in $CCS; do
        case " $allowed " in *" $cc "*) ;; *) add="$add $cc" ;; esac
    done
    if [ -n "$add" ]; then
        say "allowing the congestion control(s)$add in namespaces (net.ipv4.tcp_allowed_congestion_control, was: $allowed)"
        sysctl -qw net.ipv4.tcp_allowed_congestion_control="$allowed$add" ||
            loud "cannot allow$add: those cases will fail"
    fi
fi
# A single-process proxy holds two descriptors per relayed connection. Where
# the hard RLIMIT_NOFILE is too low for 10,000 and cannot be raised (a
# container without CAP_SYS_RESOURCE), measure as many as fit.
IDLE_NOTE=
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 65536 ]; then
    ulimit -n 65536 2>/dev/null || true
    hard=$(ulimit -Hn)
fi
if [ "$hard" != unlimited ]; then
    fit=$(((hard - 64) / 2 / 100 * 100))
    new_idle=
    for k in $IDLE; do
        if [ "$k" -gt "$fit" ]; then
            IDLE_NOTE="idle: $fit connections instead of $k, the most that fit in the hard RLIMIT_NOFILE of $hard (a proxy needs 2 descriptors per connection; raising it needs CAP_SYS_RESOURCE)"
            k=$fit
        fi
        new_idle="$new_idle $k"
    done
    IDLE=$new_idle
fi
cases=()
for m in $MODES; do
    case $m in
    throughput)
        for d in upload download echo; do
            for n in $STREAMS; do
                if [ "$n" -ge 64 ] && [ "$NETNS" = 1 ]; then
                    for cc in $CCS; do
                        cases+=("throughput --direction $d --streams $n $T --case-cc @cc=$cc")
                    done
                else
                    cases+=("throughput --direction $d --streams $n $T")
                fi
            done
        done
        ;;
    connrate) for w in $WORKERS; do cases+=("connrate --workers $w $T"); done ;;
    pingpong) for s in 1 64; do cases+=("pingpong --size $s --count $PINGS"); done ;;
    idle) for k in $IDLE; do cases+=("idle --conns $k --sources 64"); done ;;
    *) say "unknown mode $m"; exit 2 ;;
    esac
done

read -r -a peers <<<"$PEERS"
np=${#peers[@]}
total=$((${#cases[@]} * REPS * np))
{
    echo "# sixsocks benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- command: \`bench/run.sh $ARGS_SEEN\` ($PROFILE build, $REPS repetition(s), peers interleaved)"
    if [ -n "${BENCH_COMMIT:-}" ]; then
        echo "- sixsocks: $BENCH_COMMIT"
    else
        echo "- sixsocks: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (with local changes)')"
    fi
    echo "- machine: $(uname -srm), $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "- peers: $(dpkg-query -W -f '${Package} ${Version}, ' dante-server microsocks 2>/dev/null | sed 's/, $//')"
    case " $PEERS " in *" floor "*)
        echo "- floor relay: bench/floor/floor.c (${FLOOR_CC:-built before}), $FLOOR_THREADS thread(s)" ;;
    esac
    echo "- network namespaces: $([ "$NETNS" = 1 ] && echo 'yes, one per run' || echo no)"
    echo "- TCP congestion control: $CC_DEFAULT by default; the cases of 64 streams and more under each of: $CCS (named in the case)"
    [ -z "$IDLE_NOTE" ] || echo "- $IDLE_NOTE"
    echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/header.md"

say "results in $OUT ($total runs)"
i=0
for c in "${cases[@]}"; do
    for rep in $(seq 1 "$REPS"); do
        for k in $(seq 0 $((np - 1))); do
            # Rotate the order each repetition so that no peer always runs
            # first (or right after the heaviest one).
            peer=${peers[$(((k + rep - 1) % np))]}
            i=$((i + 1))
            if [ "$peer" = direct ] && [ "${c%% *}" = idle ]; then
                continue # a direct connection has no proxy memory to measure
            fi
            if [ "${peer#sixsocks6}" != "$peer" ] && [ "${c%% *}" != connrate ]; then
                continue # SOCKS 6 is measured for its 0-RTT connection rate
            fi
            say "[$i/$total] $peer rep $rep: $c"
            WORK=$(mktemp -d "$OUT/run.XXXXXX")
            # A trailing "@cc=NAME" is for this script: the namespace's congestion control.
            args=${c%% @cc=*}
            cc=
            [ "$args" = "$c" ] || cc=${c##* @cc=}
            # shellcheck disable=SC2086 # $args is a list of arguments
            if [ "$NETNS" = 1 ]; then
                BENCH_CC=$cc BENCH_WORK=$WORK unshare -n -- bash "$SELF" --inner "$peer" $args --rep "$rep" >>"$RESULTS" || true
            else
                BENCH_WORK=$WORK bash "$SELF" --inner "$peer" $args --rep "$rep" >>"$RESULTS" || true
            fi
            # Keep the logs of runs that left any; drop empty work dirs.
            rmdir "$WORK" 2>/dev/null || true
        done
    done
done

echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/header.md"
req=()
if [ "$SMOKE" = 1 ]; then
    # The harness works if the direct runs, sixsocks's and the floor
    # relay's all succeeded.
    req=(--require-ok direct,floor,sixsocks)
fi
rc=0
{
    cat "$OUT/header.md"
    echo
    "$BENCH_BIN" report "$RESULTS" "${req[@]}"
} >"$OUT/report.md" || rc=$?
cat "$OUT/report.md"
say "report: $OUT/report.md, raw results: $RESULTS"

# The same figures as JSON, and a chart of each. Charts are a view of the
# tables: without matplotlib they are skipped loudly, unless asked for
# (--charts) or under CI, where that fails the run.
"$BENCH_BIN" report --json "$RESULTS" "${req[@]}" >"$OUT/summary.json" 2>/dev/null || rc=$?
if [ "$CHARTS" != no ]; then
    chart_opt=(--if-available)
    if [ "$CHARTS" = yes ] || [ -n "${CI:-}" ]; then
        chart_opt=()
    fi
    if python3 "$ROOT/bench/charts.py" "$OUT/summary.json" --out "$OUT/charts" "${chart_opt[@]}"; then
        say "charts: $OUT/charts/*.svg, figures as JSON: $OUT/summary.json"
    else
        say "charts failed"
        rc=1
    fi
fi
exit $rc
