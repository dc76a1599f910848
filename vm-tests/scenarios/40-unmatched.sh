# (c) Traffic to the relay address on a port no leg owns is passed to the stack, not
# forwarded: the pass counter grows by the burst, the forward counters and the sink do not.
. /vm/guest/lib.sh
N=5000
fwd0=$(($(counter verdict_redirect) + $(counter verdict_tx)))
pass0=$(counter pass_unknown_leg)
rx0=$(rx_packets sink s0)
# 29000: below the relay's port range (30000-39999), so never a leg.
pktgen_send $N 29000
wait_stable sink s0
fwd=$(($(counter verdict_redirect) + $(counter verdict_tx) - fwd0))
pass=$(($(counter pass_unknown_leg) - pass0))
rx=$(($(rx_packets sink s0) - rx0))
echo "sent $N to an unknown port: passed $pass, forwarded $fwd, sink received $rx"
[ "$fwd" = 0 ] || fail "forwarded $fwd frames that match no leg"
[ "$rx" = 0 ] || fail "the sink received $rx frames"
[ "$pass" -gt 0 ] || fail "nothing counted as pass_unknown_leg"
