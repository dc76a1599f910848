# Runs inside the gen namespace: pktgen.sh COUNT DST_PORT DST_MAC. Prints pktgen's result.
count=$1
port=$2
dmac=$3
pg() {
    echo "$2" > "/proc/net/pktgen/$1" || { echo "pktgen: '$2' refused by $1"; exit 1; }
}
pg kpktgend_0 "rem_device_all"
pg kpktgend_0 "add_device g0"
pg g0 "count $count"
# veth cannot take cloned skbs nor bursts.
pg g0 "clone_skb 0"
pg g0 "burst 1"
# 172 bytes of RTP (20 ms of G.711) + UDP, IPv4 and Ethernet headers.
pg g0 "pkt_size 214"
pg g0 "delay 0"
pg g0 "dst 198.18.1.1"
pg g0 "src_min 198.18.1.2"
pg g0 "src_max 198.18.1.2"
pg g0 "dst_mac $dmac"
pg g0 "udp_src_min 5004"
pg g0 "udp_src_max 5004"
pg g0 "udp_dst_min $port"
pg g0 "udp_dst_max $port"
# Blocks until `count` frames are sent: bounded by the count and by the scenario's timeout.
echo start > /proc/net/pktgen/pgctrl
grep -E "^Result|pkts-sofar|errors" /proc/net/pktgen/g0
