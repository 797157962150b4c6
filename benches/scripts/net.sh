#!/bin/bash
# net.sh HOSTS [LOSS%] | net.sh clean
#
# The bench's bridge network, for measuring by hand: namespaces mdpb-h0
# (the sender, 10.77.0.1) to mdpb-h<HOSTS-1> (receivers, 10.77.0.2, ...) on
# veth pairs to a bridge in mdpb-hub, as `cargo xtask bench` builds it:
# multicast snooping off, GSO cut into frames before the veth, GRO on each
# host, and LOSS % independent loss towards every receiver (nftables
# numgen). Use exactly the hosts a case needs: the bridge floods every
# host. Root; nothing is routed out. `net.sh clean` removes it all.
set -e
clean() {
    for ns in $(ip netns list | awk '/^mdpb-/ {print $1}'); do ip netns del "$ns"; done
}
clean
[ "$1" = clean ] && exit 0
N=${1:?usage: net.sh HOSTS [LOSS%] | net.sh clean}
LOSS=${2:-0}
ip netns add mdpb-hub
ip -n mdpb-hub link add br0 type bridge
ip -n mdpb-hub link set br0 type bridge mcast_snooping 0
ip -n mdpb-hub link set br0 up
for i in $(seq 0 $((N - 1))); do
    h=mdpb-h$i
    ip netns add $h
    ip -n mdpb-hub link add p$i type veth peer name eth0 netns $h
    ip -n mdpb-hub link set p$i master br0 up
    ip -n $h link set lo up
    ip -n $h link set eth0 up
    ip -n $h addr add 10.77.0.$((i + 1))/24 brd + dev eth0
    ip -n $h route add 224.0.0.0/4 dev eth0
    ip netns exec $h ethtool -K eth0 tx-udp-segmentation off gro on >/dev/null
    ip netns exec mdpb-hub ethtool -K p$i tso off gso off >/dev/null
    if [ "$i" -gt 0 ] && [ "$LOSS" -gt 0 ]; then
        if ! ip netns exec mdpb-hub nft list table bridge mdpb_loss >/dev/null 2>&1; then
            ip netns exec mdpb-hub nft add table bridge mdpb_loss
            ip netns exec mdpb-hub nft add chain bridge mdpb_loss forward '{ type filter hook forward priority 0 ; }'
        fi
        ip netns exec mdpb-hub nft add rule bridge mdpb_loss forward oif "p$i" meta l4proto udp \
            numgen random mod 1000 "<" $((LOSS * 10)) drop
    fi
done
