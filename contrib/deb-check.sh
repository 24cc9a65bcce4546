#!/usr/bin/env bash
# Build the .deb (contrib/build-deb.sh) and check it in a throwaway root.
# Run as root on Debian (12); .ci/run calls it after the tests.
#
# The throwaway root: inside a private mount namespace (unshare --mount), an
# overlay whose lower layer is this machine's / (read-only, never written)
# and whose upper layer is a tmpfs, with /dev, /proc and /run bound or
# mounted fresh; the package is installed there with `dpkg -i` under
# chroot. Everything dpkg and the maintainer scripts write (the files, the
# sixsocks user, dpkg's database) lands in the tmpfs and is gone when the
# namespace ends: the machine is left as it was.
#
# In that root it checks:
#   - nothing is enabled, started or listening after the install;
#   - /usr/bin/sixsocks --version runs and names the version and commit;
#   - the sixsocks system user exists, without a shell or a home;
#   - `man --warnings -l` renders every installed page with no warning, and
#     `man -w` finds each one by name;
#   - each installed completion script passes its shell's syntax check;
#   - `systemd-analyze verify` accepts the installed unit, with no output
#     at all (it runs on the unit's path: no systemd is running as PID 1 in
#     a container, and verify does not need one);
#   - a changed conffile survives a reinstall and `dpkg -r`, which removes
#     every other file; `dpkg -P` then removes the conffile and /etc/sixsocks.
#
# Usage: contrib/deb-check.sh [PATH.deb]  (without one, it builds it).
set -euo pipefail

stage=${DEB_CHECK_STAGE:-host}

log() { printf 'deb-check: %s\n' "$*" >&2; }
fail() {
    printf 'deb-check: FAILED: %s\n' "$*" >&2
    exit 1
}

case $stage in
host)
    cd "$(dirname "$0")/.."
    [[ $(id -u) == 0 ]] || fail "run as root (it mounts an overlay and installs a package into it)"
    for tool in unshare chroot dpkg man groff systemd-analyze bash zsh fish adduser; do
        command -v "$tool" >/dev/null || fail "missing tool: $tool (.ci/run installs it)"
    done
    if [[ $# -ge 1 ]]; then
        deb=$(realpath "$1")
    else
        deb=$(contrib/build-deb.sh | tail -n1)
    fi
    [[ -f $deb ]] || fail "no package at $deb"
    log "package: $deb"
    commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    scratch=$(mktemp -d /tmp/sixsocks-deb-check.XXXXXX)
    trap 'rm -rf "$scratch"' EXIT
    DEB_CHECK_STAGE=namespace DEB_CHECK_COMMIT=$commit \
        unshare --mount --propagation private bash "$0" "$scratch" "$deb"
    log "all checks passed"
    ;;

namespace)
    # In the private mount namespace: build the root, then run the checks in it.
    scratch=$1 deb=$2
    mkdir -p "$scratch/layers" "$scratch/root"
    mount -t tmpfs -o size=1g,mode=0755 deb-check "$scratch/layers"
    mkdir -p "$scratch/layers/upper" "$scratch/layers/work"
    mount -t overlay deb-check-root \
        -o "lowerdir=/,upperdir=$scratch/layers/upper,workdir=$scratch/layers/work" \
        "$scratch/root"
    root=$scratch/root
    mount --rbind /dev "$root/dev"
    mount -t proc proc "$root/proc"
    # /run and /tmp start empty: no systemd seen running, no leftovers.
    mount -t tmpfs tmpfs "$root/run"
    mount -t tmpfs tmpfs "$root/tmp"
    mkdir -p "$root/run/lock"
    cp "$deb" "$root/tmp/sixsocks.deb"
    cp "$0" "$root/tmp/deb-check.sh"
    DEB_CHECK_STAGE=root chroot "$root" /usr/bin/env \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DEB_CHECK_STAGE=root DEB_CHECK_COMMIT="${DEB_CHECK_COMMIT:-unknown}" \
        LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        bash /tmp/deb-check.sh /tmp/sixsocks.deb
    ;;

root)
    deb=$1
    unit=/lib/systemd/system/sixsocks.service
    conf=/etc/sixsocks/sixsocks.toml

    status=$(dpkg-query -W -f='${Status}' sixsocks 2>/dev/null || true)
    [[ -z $status || $status == *not-installed ]] ||
        fail "sixsocks is on this machine's / ($status): the check needs a root without it"

    getent passwd sixsocks >/dev/null && fail "a sixsocks user exists before the install"

    log "dpkg -i"
    dpkg -i "$deb"
    dpkg-query -W -f='${Status}\n' sixsocks | grep -qx 'install ok installed' || fail "not installed"
    mapfile -t files < <(dpkg -L sixsocks | while read -r f; do [[ -f $f ]] && echo "$f"; done)
    ((${#files[@]} > 10)) || fail "dpkg -L lists only ${#files[@]} files"
    log "installed ${#files[@]} files"

    # Not enabled, not started, nothing listening.
    state=$(systemctl is-enabled sixsocks.service 2>/dev/null || true)
    [[ $state == disabled ]] || fail "after install the unit is '$state', not 'disabled'"
    if compgen -G '/etc/systemd/system/*.wants/sixsocks.service' >/dev/null; then
        fail "the package enabled the unit"
    fi
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null || true)
        [[ $exe == /usr/bin/sixsocks ]] && fail "a sixsocks process runs after the install (${p#/proc/})"
    done

    # The binary.
    version=$(/usr/bin/sixsocks --version)
    log "$version"
    pkgver=$(dpkg-query -W -f='${Version}' sixsocks)
    [[ $version == "sixsocks ${pkgver%-*} (commit "* ]] || fail "--version: '$version' (package $pkgver)"
    if [[ $DEB_CHECK_COMMIT != unknown ]]; then
        [[ $version == *"commit $DEB_CHECK_COMMIT"* ]] || fail "--version does not name commit $DEB_CHECK_COMMIT: '$version'"
    fi
    [[ $version == *"optional features: "* ]] || fail "--version names no features: '$version'"

    # The user.
    IFS=: read -r _ _ uid gid _ home shell < <(getent passwd sixsocks) || fail "no sixsocks user"
    getent group sixsocks >/dev/null || fail "no sixsocks group"
    ((uid < 1000)) || fail "sixsocks is not a system user (uid $uid)"
    [[ $shell == /usr/sbin/nologin ]] || fail "sixsocks has shell $shell"
    [[ ! -e $home ]] || fail "sixsocks has a home: $home"

    # The config the package installs is valid and loopback-only.
    /usr/bin/sixsocks check --config "$conf" >/tmp/check.out 2>&1 || { cat /tmp/check.out >&2; fail "sixsocks check $conf"; }
    grep -q '^listen: 127.0.0.1:1080$' /tmp/check.out || { cat /tmp/check.out >&2; fail "$conf does not listen on loopback only"; }

    # Man pages: every installed one renders with no warning and is found by name.
    pages=()
    for f in "${files[@]}"; do [[ $f == /usr/share/man/* ]] && pages+=("$f"); done
    ((${#pages[@]} == 9)) || fail "expected 9 man pages (sixsocks.toml.5, sixsocks.1 and one per subcommand), found ${#pages[@]}: ${pages[*]}"
    for page in "${pages[@]}"; do
        warnings=$(MANWIDTH=80 MANPAGER=cat man --warnings -l "$page" 2>&1 >/tmp/page.txt) ||
            fail "man -l $page failed"
        [[ -z $warnings ]] || fail "man -l $page warned: $warnings"
        grep -q '^NAME' /tmp/page.txt || fail "$page renders without a NAME section"
        name=$(basename "$page" .gz)
        section=${name##*.}
        name=${name%.*}
        [[ $(man -w "$section" "$name") == "$page" ]] || fail "man -w $section $name does not find $page"
    done
    log "man: ${#pages[@]} pages render without warnings"

    # Completions.
    bash -n /usr/share/bash-completion/completions/sixsocks || fail "bash -n"
    zsh -n /usr/share/zsh/vendor-completions/_sixsocks || fail "zsh -n"
    fish --no-execute /usr/share/fish/vendor_completions.d/sixsocks.fish || fail "fish --no-execute"
    log "completions: bash, zsh and fish scripts parse"

    # The unit: systemd-analyze verify on its path. It exits 0 on some
    # problems (unknown keys) and only warns, so any output fails too.
    # First, that it does see a broken unit here.
    sed 's/^ExecStart=/ExecStartt=/' "$unit" >/tmp/broken.service
    out=$(systemd-analyze verify /tmp/broken.service 2>&1 || true)
    [[ -n $out ]] || fail "systemd-analyze verify says nothing about a broken unit: the check below would prove nothing"
    if ! out=$(systemd-analyze verify "$unit" 2>&1) || [[ -n $out ]]; then
        fail "systemd-analyze verify $unit: $out"
    fi
    log "systemd-analyze verify accepts $unit"

    # Conffile: listed, kept when changed, across reinstall and removal.
    dpkg-query -W -f='${Conffiles}\n' sixsocks | grep -q "^ $conf " || fail "$conf is not a conffile"
    echo '# changed by the operator' >>"$conf"
    dpkg -i --force-confold "$deb"
    grep -q '^# changed by the operator$' "$conf" || fail "reinstalling replaced the changed $conf"
    log "dpkg -r"
    dpkg -r sixsocks
    for f in "${files[@]}"; do
        [[ $f == "$conf" ]] && continue
        [[ -e $f || -L $f ]] && fail "dpkg -r left $f"
    done
    grep -q '^# changed by the operator$' "$conf" || fail "dpkg -r did not keep the changed $conf"
    dpkg-query -W -f='${Status}\n' sixsocks | grep -qx 'deinstall ok config-files' || fail "not in config-files state after dpkg -r"
    log "dpkg -P"
    dpkg -P sixsocks
    [[ ! -e $conf && ! -e /etc/sixsocks ]] || fail "dpkg -P left /etc/sixsocks"
    for f in "${files[@]}"; do
        [[ -e $f || -L $f ]] && fail "dpkg -P left $f"
    done
    status=$(dpkg-query -W -f='${Status}' sixsocks 2>/dev/null || true)
    [[ -z $status || $status == *not-installed ]] || fail "after the purge dpkg says: $status"

    # The user stays after a purge (Debian's practice; see contrib/deb/postrm).
    log "in the throwaway root: install, run, man, completions, unit, conffile, remove, purge: ok"
    ;;
*)
    fail "unknown stage $stage"
    ;;
esac
