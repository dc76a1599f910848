# (b) A bounded pktgen burst to side a's relay port: every frame the relay's kernel counters
# say XDP forwarded reaches the sink, rewritten as the leg says (from side b's relay
# address:port to the sink's signalled address; the sink checks every datagram), and the
# sink's interface saw exactly that many frames. The sink socket may overflow at TCG speed
# (Python reads slower than XDP forwards): what it read plus the kernel's receive-buffer drops
# must still add up to the forwarded count.
. /vm/guest/lib.sh
N=20000
read relay_a relay_b < /tmp/ports
fwd0=$(counter verdict_redirect)
rx0=$(rx_packets sink s0)
drop0=$(udp_stat sink RcvbufErrors)
in_ns sink python3 /vm/guest/sink.py 198.18.2.2 6004 "$relay_b" /tmp/sink-burst > /tmp/sink.log &
sink=$!
sleep 1
pktgen_send $N "${relay_a##*:}"
wait_stable sink s0
wait $sink
fwd=$(($(counter verdict_redirect) - fwd0))
rx=$(($(rx_packets sink s0) - rx0))
drops=$(($(udp_stat sink RcvbufErrors) - drop0))
read_n=$(sed 's/^count=\([0-9]*\) .*/\1/' /tmp/sink-burst)
echo "sent $N, relay kernel forwarded $fwd, sink interface received $rx, sink socket: $(cat /tmp/sink-burst), socket buffer drops $drops"
relay_ctl counters
[ "$fwd" -gt 0 ] || fail "the relay forwarded nothing"
[ "$rx" = "$fwd" ] || fail "sink received $rx frames but the relay forwarded $fwd"
grep -q "bad=0 " /tmp/sink-burst || fail "wrongly rewritten datagrams: $(cat /tmp/sink-burst)"
[ "$read_n" -gt 0 ] || fail "the sink socket read nothing"
[ $((read_n + drops)) = "$fwd" ] || fail "sink socket read $read_n + dropped $drops != forwarded $fwd"
