#!/bin/bash
# loopback-memory.sh LOSS% [FILE]
#
# Peak memory of a large push: FILE (default /tmp/mdp-2GiB.bin, 2 GiB of
# random bytes, made if missing) over loopback multicast to 2 receivers,
# LOSS % of the data port's datagrams dropped by nftables, default
# settings. Run it in a private network namespace, as root:
# `unshare -n benches/scripts/loopback-memory.sh 5`. Prints each
# process's /usr/bin/time line (wall time, peak RSS) and the sender's
# outcome.
set -e
LOSS=${1:?usage: unshare -n loopback-memory.sh LOSS% [FILE]}
FILE=${2:-/tmp/mdp-2GiB.bin}
B=${B:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
OUT=${OUT:-/tmp/mdp-memory}
if ip -o link show | grep -qv ' lo:'; then
    echo "loopback-memory.sh: run it in a private network namespace: unshare -n $0 $*" >&2
    exit 2
fi
[ -f "$FILE" ] || head -c 2G /dev/urandom >"$FILE"
ip link set lo up
ip route add 224.0.0.0/4 dev lo src 127.0.0.1
if [ "$LOSS" != 0 ]; then
    nft add table inet mdploss
    nft add chain inet mdploss input '{ type filter hook input priority 0 ; }'
    nft add rule inet mdploss input udp dport 7400 numgen random mod 1000 "<" $((LOSS * 10)) drop
fi
rm -rf "$OUT"
mkdir -p "$OUT"
# Signed, as mdp is meant to run: the receivers trust the sender's key.
"$B/mdp-send" --gen-identity "$OUT/sender.key" >"$OUT/sender.pub"
for i in 1 2; do
    /usr/bin/time -f "r$i %e s, %M KiB" "$B/mdp-recv" --dir "$OUT/r$i" --once --json \
        --timeout 120s --node-id r$i --trust "$(cat "$OUT/sender.pub")" >"$OUT/r$i.log" 2>&1 &
done
sleep 0.3
set +e
/usr/bin/time -f "send %e s, %M KiB" "$B/mdp-send" --identity "$OUT/sender.key" --receivers 2 --no-hash-cache --quiet --json \
    "$FILE" >"$OUT/s.json" 2>"$OUT/s.err"
wait
set -e
tail -1 "$OUT/s.err"
tail -1 "$OUT/r1.log"
tail -1 "$OUT/r2.log"
grep -o '"success":[a-z]*\|"elapsed_secs":[0-9.]*\|wire_bytes_per_file_byte":[0-9.]*' "$OUT/s.json" | tr '\n' ' '
echo
