# Helpers shared by the scenario scripts (sourced). Addresses: 198.18.0.0/15 only.
# Topology (made by 20-daemon.sh, used by the later scenarios):
#   ns gen  g0 198.18.1.2 <-> r0 198.18.1.1  ns relay  r1 198.18.2.1 <-> s0 198.18.2.2  ns sink
RELAY_CTL=/vm/relay-ctl
INSTANCE=vm
API=127.0.0.1:9901
STATE=/tmp/vm-relay.json

fail() {
    echo "VMTEST FAIL $SCENARIO: $*"
    exit 1
}

in_ns() {
    ns=$1
    shift
    # nsenter, not `ip netns exec`: that remounts /sys and would hide bpffs from the daemon.
    nsenter --net="/run/netns/$ns" "$@"
}

relay_ctl() {
    in_ns relay "$RELAY_CTL" --instance "$INSTANCE" --api "$API" "$@"
}

# One kernel counter of the relay, e.g. `counter verdict_redirect`.
counter() {
    relay_ctl counters | awk -v n="$1" '$1 == n { print $2 }'
}

# /sys/class/net shows the initial namespace only; /proc/net/dev and `ip -n` follow the netns.
rx_packets() {
    in_ns "$1" cat /proc/net/dev | sed 's/:/ /' | awk -v i="$2" '$1 == i { print $3 }'
}

# udp_stat NS FIELD: a field of the namespace's Udp line in /proc/net/snmp (e.g. RcvbufErrors).
udp_stat() {
    in_ns "$1" cat /proc/net/snmp | awk -v f="$2" '
        $1 == "Udp:" && !h { for (i = 2; i <= NF; i++) if ($i == f) c = i; h = 1; next }
        $1 == "Udp:" && h { print $c }'
}

mac_of() {
    ip -n "$1" -br link show dev "$2" | awk '{ print $3 }'
}

# pktgen_send COUNT DST_PORT: COUNT RTP-sized UDP frames from gen (198.18.1.2:5004) to
# 198.18.1.1:DST_PORT, addressed to r0's MAC. /proc/net/pktgen is per network namespace, so
# the whole configuration runs inside gen.
pktgen_send() {
    in_ns gen sh /vm/guest/pktgen.sh "$1" "$2" "$(mac_of relay r0)" || fail "pktgen failed"
}

# wait_stable NS IF: waits (at most ~5 s) until IF's rx counter stops moving.
wait_stable() {
    last=-1
    i=0
    while [ $i -lt 50 ]; do
        now=$(rx_packets "$1" "$2")
        [ "$now" = "$last" ] && return 0
        last=$now
        i=$((i + 1))
        sleep 0.1
    done
    return 0
}
