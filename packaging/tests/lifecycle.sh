#!/bin/bash
# The package's life cycle on this host, without systemd as PID 1 (CI has none): install,
# run the packaged daemon as media-relay@.service would (its ExecStart= and its
# CapabilityBoundingSet=, read from the installed unit), restart, upgrade, remove, purge.
# Checks the pins and the XDP attachment at each step: kept by a stop, a restart, an upgrade
# and a remove; gone after a purge.
#
#   lifecycle.sh OLD.deb NEW.deb     (root; run under `flock -o /tmp/relay-netns.lock`)
#
# The host's own bpffs and /run are left alone: everything runs in a private mount namespace
# with its own bpffs at /sys/fs/bpf and a tmpfs at /run (postrm purge removes
# /sys/fs/bpf/media-relay and /run/media-relay, which other instances on this host may use).
# The daemon runs in the unit's file-system sandbox as far as sandbox.sh emulates it.
# The relay interface is a veth in a namespace of its own (198.18.201.0/24). Refuses to run
# if media-relay is installed already.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
INST=pkgtest-lc
NS=pkglc-$$
UNIT=/lib/systemd/system/media-relay@.service
CONF=/etc/media-relay/$INST.toml

if [ "${1:-}" != "--inner" ]; then
    [ $# -eq 2 ] || { echo "usage: $0 OLD.deb NEW.deb" >&2; exit 2; }
    if dpkg-query -W -f='${Status}' media-relay 2>/dev/null | grep -q ' installed$'; then
        echo "lifecycle: media-relay is installed on this host; not touching it" >&2
        exit 1
    fi
    cleanup() {
        dpkg --purge media-relay >/dev/null 2>&1 || true
        rm -f "$CONF"
        rmdir /etc/media-relay 2>/dev/null || true
        ip netns del "$NS" 2>/dev/null || true
    }
    trap cleanup EXIT
    ip netns add "$NS"
    ip -n "$NS" link add pkga type veth peer name pkgb
    ip -n "$NS" addr add 198.18.201.1/24 dev pkga
    ip -n "$NS" addr add 198.18.201.2/24 dev pkgb
    for l in lo pkga pkgb; do ip -n "$NS" link set "$l" up; done
    unshare -m --propagation private "$0" --inner "$NS" "$(realpath "$1")" "$(realpath "$2")"
    echo "lifecycle: ok"
    exit 0
fi

NS=$2 OLD=$3 NEW=$4
exec 9<"/run/netns/$NS"   # the namespace stays reachable under the tmpfs below
mount -t bpf -o mode=0700 bpf /sys/fs/bpf
mount -t tmpfs -o mode=0755 tmpfs /run
LOG=$(mktemp -d)/daemon.log
PID=
trap '[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null; wait 2>/dev/null; true' EXIT

step() { echo "lifecycle: $*"; }
fail() { echo "lifecycle: FAILED: $*" >&2; [ -f "$LOG" ] && tail -20 "$LOG" >&2; exit 1; }
innet() { nsenter --net=/proc/$$/fd/9 "$@"; }
xdp_prog() { innet ip -d link show pkga | sed -n 's/.*prog\/xdp id \([0-9]*\).*/\1/p' | head -1; }
pins() { [ -e "/sys/fs/bpf/media-relay/$INST/links/pkga" ]; }

# As systemd would start the instance: the unit's ExecStart= with %i, and its bounding set
# (uid 0 keeps exactly the bounding set's capabilities).
start() {
    local exec caps
    exec=$(sed -n 's/^ExecStart=//p' "$UNIT" | sed "s/%i/$INST/g")
    caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$UNIT" | tr 'A-Z' 'a-z' | sed 's/cap_/+/g; s/ /,/g')
    [ -n "$exec" ] && [ -n "$caps" ] || fail "no ExecStart= or CapabilityBoundingSet= in $UNIT"
    mkdir -p -m 0700 /sys/fs/bpf/media-relay   # the unit's ExecStartPre=
    # Not through innet(): $! must be the daemon itself (nsenter, unshare, sandbox.sh and
    # setpriv all exec), and fd 9 (and any lock a caller holds) stays out of it. sandbox.sh
    # makes the file system as read-only as the unit's sandbox does.
    # shellcheck disable=SC2086
    nsenter --net=/proc/$$/fd/9 unshare -m --propagation private "$HERE/sandbox.sh" \
        setpriv --bounding-set="-all,$caps" --inh-caps=-all --no-new-privs -- \
        $exec >"$LOG" 2>&1 9<&- &
    PID=$!
    for _ in $(seq 100); do
        grep -q 'ready: instance' "$LOG" && innet relay-ctl stats >/dev/null 2>&1 && return 0
        kill -0 "$PID" 2>/dev/null || fail "the daemon exited at start"
        sleep 0.1
    done
    fail "the daemon's API did not answer"
}
stop() {  # systemctl stop: SIGTERM
    kill -TERM "$PID"
    wait "$PID" || fail "the daemon exited with $? on SIGTERM"
    PID=
}
attached() {
    pins || fail "$1: the pins are gone"
    [ -n "$(xdp_prog)" ] || fail "$1: XDP is not attached"
}

step "install $(basename "$OLD")"
dpkg -i "$OLD" >/dev/null
[ -x /usr/bin/relay-ctl ] && [ -f /etc/media-relay/example.toml ] || fail "installed files missing"
printf 'iface = ["pkga"]\nsip-port = 0\nstun-port = 0\n' >"$CONF"

start; grep -q "instance \"$INST\" pinned" "$LOG" || fail "first start did not pin"
prog=$(xdp_prog)
stop; attached "after stop"
start; grep -q "instance \"$INST\" adopted" "$LOG" || fail "restart did not adopt the pins"
stop; attached "after restart"
step "stop and restart keep XDP attached (prog $prog), the restart adopted the pins"

step "upgrade to $(basename "$NEW")"
dpkg -i "$NEW" >/dev/null
attached "after upgrade"
[ "$(xdp_prog)" = "$prog" ] || fail "the upgrade replaced the XDP program"
start; grep -q "instance \"$INST\" adopted" "$LOG" || fail "the upgraded daemon did not adopt"
stop
step "upgrade kept XDP attached, the new binary adopted the pins"

step "remove"
dpkg --remove media-relay >/dev/null
[ ! -e /usr/bin/relay-ctl ] || fail "remove left the binary"
attached "after remove"
[ -f "$CONF" ] || fail "remove took the operator's config"

step "purge"
touch /run/media-relay/"$INST".json
dpkg --purge media-relay >/dev/null
! pins || fail "purge left the pins"
[ ! -e /run/media-relay ] || fail "purge left /run/media-relay"
for _ in $(seq 50); do [ -z "$(xdp_prog)" ] && break; sleep 0.1; done
[ -z "$(xdp_prog)" ] || fail "XDP still attached after purge"
[ -f "$CONF" ] || fail "purge took the operator's config"
step "purge removed the pins and the state, and the kernel detached XDP"
