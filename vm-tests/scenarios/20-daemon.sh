# (a)+(d) The statically linked daemon starts in the relay namespace, attaches XDP in native
# mode, creates a session through its API and relays the first packet (which latches side a).
# Leaves the topology, the daemon and session "vm-1" for the later scenarios.
. /vm/guest/lib.sh
for ns in gen relay sink; do ip netns add $ns || fail "netns $ns"; done
ip link add g0 netns gen type veth peer name r0 netns relay || fail "veth g0/r0"
ip link add s0 netns sink type veth peer name r1 netns relay || fail "veth s0/r1"
for x in "gen g0 198.18.1.2/24" "relay r0 198.18.1.1/24" "relay r1 198.18.2.1/24" \
    "sink s0 198.18.2.2/24"; do
    set -- $x
    in_ns $1 ip addr add $3 dev $2 || fail "addr $3"
    in_ns $1 ip link set $2 up || fail "up $2"
    # No IPv6 chatter (router solicitations, DAD) in the interface counters we compare.
    in_ns $1 sysctl -qw net.ipv6.conf.$2.disable_ipv6=1
    in_ns $1 ip link set lo up
done
# Permanent neighbours: no ARP frames in the counts, and bpf_fib_lookup always has a MAC.
in_ns relay ip neigh replace 198.18.1.2 lladdr "$(mac_of gen g0)" dev r0 nud permanent
in_ns relay ip neigh replace 198.18.2.2 lladdr "$(mac_of sink s0)" dev r1 nud permanent
in_ns sink ip neigh replace 198.18.2.1 lladdr "$(mac_of relay r1)" dev s0 nud permanent
# A veth only takes XDP-redirected frames with NAPI on: GRO requested turns it on.
in_ns sink ethtool -K s0 gro off
in_ns sink ethtool -K s0 gro on || fail "ethtool gro on s0"
sysctl -qw net.core.rmem_max=134217728

in_ns relay "$RELAY_CTL" --instance "$INSTANCE" daemon --iface r0 --iface r1 \
    --xdp-mode native --state-file "$STATE" --api-listen "$API" > /tmp/daemon.log 2>&1 &
echo $! > /tmp/daemon.pid
i=0
until in_ns relay wget -q -O /dev/null "http://$API/healthz"; do
    i=$((i + 1))
    [ $i -lt 100 ] || { cat /tmp/daemon.log; fail "daemon API not up after 10 s"; }
    sleep 0.1
done
for ifc in r0 r1; do
    mode=$(in_ns relay ip -d link show $ifc | grep -oE "xdp(generic|drv|offload)?" | head -1)
    [ "$mode" = "xdp" ] || [ "$mode" = "xdpdrv" ] || fail "$ifc: XDP mode '$mode', not native"
done
echo "attached natively on r0 and r1"

body='{"call_id":"vm-1","streams":[{"a":{"peer":"198.18.1.2:5004","relay_addr":"198.18.1.1"},"b":{"peer":"198.18.2.2:6004","relay_addr":"198.18.2.1"}}]}'
in_ns relay curl -sf -X POST -H 'content-type: application/json' -d "$body" \
    "http://$API/v1/sessions" > /tmp/session.json || fail "POST /v1/sessions refused"
python3 - /tmp/session.json > /tmp/ports <<'PY' || fail "no relay ports in the answer"
import json, sys
legs = json.load(open(sys.argv[1]))["streams"][0]["legs"]
print(" ".join(l["relay"] for l in legs))
PY
read relay_a relay_b < /tmp/ports
echo "session vm-1: side a relay $relay_a, side b relay $relay_b"

# The first packet latches side a (the controller forwards it); then side a is in the kernel.
in_ns sink python3 /vm/guest/sink.py 198.18.2.2 6004 "$relay_b" /tmp/sink-latch > /tmp/sink.log &
sink=$!
sleep 1
pktgen_send 1 "${relay_a##*:}"
i=0
until relay_ctl session vm-1 --json | grep -q '"kernel": true'; do
    i=$((i + 1))
    [ $i -lt 50 ] || { relay_ctl session vm-1; cat /tmp/daemon.log; fail "side a never reached the kernel"; }
    sleep 0.1
done
wait $sink
cat /tmp/sink-latch
grep -q "^count=1 bad=0" /tmp/sink-latch || fail "latching packet not relayed: $(cat /tmp/sink-latch)"
relay_ctl session vm-1
