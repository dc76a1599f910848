# The package scenario (vm-tests/README.md, "The package guest"), run by the guest's systemd as
# vmtest.service: the Debian package is installed with apt, its instance is started and
# restarted by systemd, upgraded by apt while media flows, then purged. Every step prints
# `VMTEST PASS package-<step>` or `VMTEST FAIL ...` on the console; the host judges those.
# Addresses: 198.18.0.0/15 only. Topology: ns gen g0 198.18.1.2 <-> r0 198.18.1.1 (the guest's
# own namespace, where systemd runs the daemon) r1 198.18.2.1 <-> s0 198.18.2.2 ns sink.
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive
V1=$(sed -n 1p /vmtest/versions)
V2=$(sed -n 2p /vmtest/versions)
UNIT=media-relay@vm
API=127.0.0.1:9901
RATE=200
T0=$(date +%s)
STEP=boot

finish() {
    echo "VMTEST DONE"
    # poweroff.target directly: `systemctl poweroff` asks logind over D-Bus first, and the
    # image has neither.
    systemctl --no-block start poweroff.target
    exit 0
}

fail() {
    echo "VMTEST FAIL package-$STEP: $*"
    echo "---- journalctl -u $UNIT ----"
    journalctl -u "$UNIT" --no-pager -o short-monotonic 2>&1 | tail -n 80
    echo "---- end of journal ----"
    touch /tmp/stop
    finish
}

pass() {
    echo "step $STEP done at $(($(date +%s) - T0)) s"
    echo "VMTEST PASS package-$STEP"
}

step() {
    STEP=$1
    echo "== step $STEP"
}

in_ns() {
    ns=$1
    shift
    nsenter --net="/run/netns/$ns" "$@"
}

mac_of() {
    ip ${2:+-n "$2"} -br link show dev "$1" | awk '{ print $3 }'
}

# wait_api SECONDS: until /healthz answers.
wait_api() {
    i=0
    until curl -sf -o /dev/null "http://$API/healthz"; do
        i=$((i + 1))
        [ $i -lt $(($1 * 10)) ] || return 1
        sleep 0.1
    done
}

xdp_on() {
    ip -d link show dev "$1" | grep -qE "prog/xdp|xdp(generic|drv)? "
}

check_running() {
    [ "$(systemctl is-active $UNIT)" = active ] || fail "$UNIT is not active"
    wait_api 20 || fail "the API at $API did not answer /healthz"
    for i in r0 r1; do xdp_on $i || fail "no XDP program attached to $i"; done
    [ -n "$(ls -A /sys/fs/bpf/media-relay/vm 2>/dev/null)" ] || fail "nothing pinned under /sys/fs/bpf/media-relay/vm"
    # The session survived: the daemon adopted the pins and its state file.
    if [ -n "${SESSION_UP:-}" ]; then
        curl -sf "http://$API/v1/sessions/vm-1" > /tmp/s.json || fail "session vm-1 is gone"
        grep -q '"kernel": *true' /tmp/s.json || fail "session vm-1 is no longer in the kernel: $(cat /tmp/s.json)"
    fi
}

# How many datagrams the sender has sent so far (updated every 0.1 s).
sent_so_far() {
    cat /tmp/send.out.progress 2>/dev/null || echo 0
}

main_pid() {
    systemctl show -p MainPID --value $UNIT
}

STEP=systemd
[ "$(cat /proc/1/comm)" = systemd ] || fail "PID 1 is $(cat /proc/1/comm), not systemd"
echo "PID 1 is $(readlink /proc/1/exe); $(uname -r); Debian $(cat /etc/debian_version)"
pass

step topology
for ns in gen sink; do ip netns add $ns || fail "netns $ns"; done
ip link add g0 netns gen type veth peer name r0 || fail "veth g0/r0"
ip link add s0 netns sink type veth peer name r1 || fail "veth s0/r1"
for x in "gen g0 198.18.1.2/24" "- r0 198.18.1.1/24" "- r1 198.18.2.1/24" "sink s0 198.18.2.2/24"; do
    set -- $x
    if [ "$1" = - ]; then run=; else run="in_ns $1"; fi
    $run sysctl -qw net.ipv6.conf.$2.disable_ipv6=1
    $run ip addr add $3 dev $2 || fail "addr $3"
    $run ip link set $2 up || fail "up $2"
    $run ip link set lo up
done
ip neigh replace 198.18.1.2 lladdr "$(mac_of g0 gen)" dev r0 nud permanent
ip neigh replace 198.18.2.2 lladdr "$(mac_of s0 sink)" dev r1 nud permanent
in_ns gen ip neigh replace 198.18.1.1 lladdr "$(mac_of r0)" dev g0 nud permanent
in_ns sink ip neigh replace 198.18.2.1 lladdr "$(mac_of r1)" dev s0 nud permanent
# A veth only takes XDP-redirected frames with NAPI on: GRO requested turns it on.
in_ns sink ethtool -K s0 gro off
in_ns sink ethtool -K s0 gro on || fail "ethtool gro on s0"
# A socket's datagrams leave a veth with the UDP checksum left to "hardware" (CHECKSUM_PARTIAL);
# redirected by XDP they would reach the sink unfinished and be dropped: complete them in gen.
in_ns gen ethtool -K g0 tx off > /dev/null || fail "ethtool tx off g0"
pass

step install
cd /vmtest || fail "no /vmtest"
apt install -y ./media-relay_${V1}_amd64.deb > /tmp/apt-install.log 2>&1 \
    || { cat /tmp/apt-install.log; fail "apt install ./media-relay_${V1}_amd64.deb failed"; }
tail -n 5 /tmp/apt-install.log
[ "$(dpkg-query -W -f='${Version}' media-relay)" = "$V1" ] || fail "media-relay $V1 is not installed"
[ -x /usr/bin/relay-ctl ] || fail "no /usr/bin/relay-ctl"
systemctl cat media-relay@.service > /dev/null || fail "no media-relay@.service unit"
ls /etc/media-relay/
pass

step start
mkdir -p /etc/media-relay
cat > /etc/media-relay/vm.toml <<'TOML'
iface = ["r0", "r1"]
xdp-mode = "native"
api-listen = "127.0.0.1:9901"
TOML
systemctl start $UNIT || fail "systemctl start $UNIT failed"
check_running
ip -d link show dev r0 | grep -E "xdp|prog"
systemctl status --no-pager $UNIT | head -n 12
pass

step session
body='{"call_id":"vm-1","streams":[{"a":{"peer":"198.18.1.2:5004","relay_addr":"198.18.1.1"},"b":{"peer":"198.18.2.2:6004","relay_addr":"198.18.2.1"}}]}'
curl -sf -X POST -H 'content-type: application/json' -d "$body" "http://$API/v1/sessions" \
    > /tmp/session.json || fail "POST /v1/sessions refused"
# The legs' relay addresses, in order (side a, side b), without a JSON parser in the image.
set -- $(grep -oE '"relay": *"[0-9.]+:[0-9]+"' /tmp/session.json | grep -oE '[0-9.]+:[0-9]+')
[ $# -eq 2 ] || fail "no relay ports in the answer: $(cat /tmp/session.json)"
relay_a=$1
relay_b=$2
echo "session vm-1: side a relay $relay_a, side b relay $relay_b"
rm -f /tmp/stop
in_ns sink python3 /vmtest/media.py sink 198.18.2.2:6004 "$relay_b" 300 /tmp/stop /tmp/sink.out &
sink=$!
sleep 1
in_ns gen python3 /vmtest/media.py send 198.18.1.2:5004 "$relay_a" $RATE 240 /tmp/stop /tmp/send.out &
sender=$!
# The first packet latches side a (the controller forwards it); then side a is in the kernel.
i=0
until curl -sf "http://$API/v1/sessions/vm-1" | grep -q '"kernel": *true'; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "side a never reached the kernel: $(curl -s "http://$API/v1/sessions/vm-1")"
    sleep 0.1
done
SESSION_UP=1
sleep 2
pass

step restart
pid=$(main_pid)
before=$(sent_so_far)
systemctl restart $UNIT || fail "systemctl restart $UNIT failed"
[ "$(main_pid)" != "$pid" ] || fail "the daemon's PID did not change ($pid)"
check_running
after=$(sent_so_far)
[ "$after" -gt "$before" ] || fail "no datagram was sent during the restart ($before, $after)"
echo "restarted: PID $pid -> $(main_pid); datagrams $before..$after were sent meanwhile"
sleep 2
pass

step upgrade
pid=$(main_pid)
before=$(sent_so_far)
apt install -y ./media-relay_${V2}_amd64.deb > /tmp/apt-upgrade.log 2>&1 \
    || { cat /tmp/apt-upgrade.log; fail "apt install ./media-relay_${V2}_amd64.deb failed"; }
tail -n 5 /tmp/apt-upgrade.log
[ "$(dpkg-query -W -f='${Version}' media-relay)" = "$V2" ] || fail "media-relay $V2 is not installed"
[ "$(main_pid)" != "$pid" ] || fail "the upgrade did not restart $UNIT (PID $pid still runs the old binary)"
check_running
after=$(sent_so_far)
[ "$after" -gt "$before" ] || fail "no datagram was sent during the upgrade ($before, $after)"
echo "upgraded to $V2: PID $pid -> $(main_pid); datagrams $before..$after were sent meanwhile"
sleep 2
pass

step zero-loss
touch /tmp/stop
wait $sender || fail "the sender failed"
wait $sink || fail "the sink failed"
sent=$(sed 's/^sent=//' /tmp/send.out)
echo "sender: $(cat /tmp/send.out); sink: $(cat /tmp/sink.out)"
relay-ctl --instance vm counters | grep -E "verdict_redirect|pass_unknown"
grep -q "^received=$sent unique=$sent dups=0 bad=0 missing=0 " /tmp/sink.out \
    || fail "sent $sent through restart and upgrade but the sink got: $(cat /tmp/sink.out)"
[ "$sent" -ge $((RATE * 4)) ] || fail "only $sent packets sent: the stream did not span the steps"
pass

step purge
apt purge -y media-relay > /tmp/apt-purge.log 2>&1 \
    || { cat /tmp/apt-purge.log; fail "apt purge media-relay failed"; }
tail -n 5 /tmp/apt-purge.log
st=$(dpkg-query -W -f='${Status}' media-relay 2>/dev/null || true)
case "$st" in "" | *not-installed) ;; *) fail "dpkg still has media-relay: $st" ;; esac
for i in r0 r1; do xdp_on $i && fail "XDP still attached to $i: $(ip -d link show dev $i)"; done
left=$(find /sys/fs/bpf/media-relay -mindepth 1 2>/dev/null)
[ -z "$left" ] || fail "still pinned: $left"
[ "$(systemctl is-active $UNIT)" != active ] || fail "$UNIT still active"
[ ! -e /usr/bin/relay-ctl ] || fail "/usr/bin/relay-ctl still there"
systemctl list-unit-files 'media-relay@*' --no-legend | grep -q . \
    && fail "unit files left: $(systemctl list-unit-files 'media-relay@*' --no-legend)"
echo "left behind (information): $(ls -d /etc/media-relay /run/media-relay /var/lib/media-relay 2>/dev/null | tr '\n' ' ')"
pass
finish
