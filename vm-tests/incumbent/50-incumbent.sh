# The bench guest's one scenario: rtpengine with its kernel module against our XDP relay,
# measured by `relay-bench incumbent` (bench/README.md), which writes its results to /out.
# First the pieces it relies on, each failing with its own message.
. /vm/guest/lib.sh

[ -e /proc/rtpengine/control ] || fail "xt_RTPENGINE is not loaded: no /proc/rtpengine/control"

# The RTPENGINE target through the host's iptables-legacy and rtpengine-iptables' extension,
# in a throwaway namespace (its tables die with it).
ns=iptcheck$$
ip netns add "$ns" || fail "ip netns add $ns"
if ! err=$(in_ns "$ns" iptables-legacy -w -I INPUT -p udp -j RTPENGINE --id 0 2>&1); then
    ip netns delete "$ns"
    fail "iptables-legacy cannot insert the RTPENGINE rule: $err"
fi
ip netns delete "$ns" || fail "ip netns delete $ns"

version=$(rtpengine --version 2>&1) || fail "rtpengine --version: $version"
echo "rtpengine: $version"

mode=$(cat /vm/bench-mode) || fail "no /vm/bench-mode"
[ -d /out ] || fail "no /out share"
/vm/relay-bench incumbent --mode "$mode" --out /out --relay-ctl /vm/relay-ctl \
    || fail "relay-bench incumbent --mode $mode exited $?"
