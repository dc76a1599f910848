# The bench guest's one scenario: rtpengine with its kernel module against our XDP relay,
# measured by `relay-bench incumbent` (bench/README.md), which writes its results to /out.
# First the pieces it relies on, each failing with its own message. /vm/incumbent says which
# rtpengine: `xt` (10.5 from the host's /usr, xt_RTPENGINE, an iptables-legacy rule) or `nft`
# (26.x built by xtask, /vm/rtpengine, nft_rtpengine; its daemon adds its own nftables chain).
. /vm/guest/lib.sh

flavor=$(cat /vm/incumbent 2>/dev/null || echo xt)
case "$flavor" in
    xt) module=xt_RTPENGINE; bin=/usr/bin/rtpengine ;;
    nft) module=nft_rtpengine; bin=/vm/rtpengine ;;
    *) fail "unknown /vm/incumbent '$flavor'" ;;
esac

[ -e /proc/rtpengine/control ] || fail "$module is not loaded: no /proc/rtpengine/control"

if [ "$flavor" = xt ]; then
    # The RTPENGINE target through the host's iptables-legacy and rtpengine-iptables'
    # extension, in a throwaway namespace (its tables die with it).
    ns=iptcheck$$
    ip netns add "$ns" || fail "ip netns add $ns"
    if ! err=$(in_ns "$ns" iptables-legacy -w -I INPUT -p udp -j RTPENGINE --id 0 2>&1); then
        ip netns delete "$ns"
        fail "iptables-legacy cannot insert the RTPENGINE rule: $err"
    fi
    ip netns delete "$ns" || fail "ip netns delete $ns"
else
    # The daemon's own nftables setup (table filter, chain INPUT -> rtpengine_0 with the
    # rtpengine expression) and its check, in a throwaway namespace.
    ns=nftcheck$$
    ip netns add "$ns" || fail "ip netns add $ns"
    if ! err=$(in_ns "$ns" "$bin" --config-file=none --table=0 --nftables-family=ip --nftables-start 2>&1) \
        || ! err=$(in_ns "$ns" "$bin" --config-file=none --table=0 --nftables-family=ip --nftables-status 2>&1); then
        ip netns delete "$ns"
        fail "rtpengine cannot set up its nftables chain: $err"
    fi
    echo "nftables: $err"
    # Removed before the namespace goes (its teardown is asynchronous): the rule holds the
    # module's table 0, which the measured daemon deletes and creates anew when it starts.
    in_ns "$ns" "$bin" --config-file=none --table=0 --nftables-family=ip --nftables-stop \
        || fail "rtpengine --nftables-stop failed"
    ip netns delete "$ns" || fail "ip netns delete $ns"
fi

version=$("$bin" --version 2>&1) || fail "$bin --version: $version"
echo "rtpengine: $version; $(dmesg | grep -m1 "Registering $module")"

mode=$(cat /vm/bench-mode) || fail "no /vm/bench-mode"
[ -d /out ] || fail "no /out share"
/vm/relay-bench incumbent --mode "$mode" --out /out --relay-ctl /vm/relay-ctl \
    --flavor "$flavor" --rtpengine "$bin" \
    || fail "relay-bench incumbent --mode $mode --flavor $flavor exited $?"
