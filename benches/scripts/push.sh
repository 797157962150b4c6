#!/bin/bash
# push.sh N [mdp-send ARGS...]
#
# One push on the network of net.sh: N receivers (`mdp-recv --once`) in
# mdpb-h1..N, the sender in mdpb-h0 with ARGS (the files to push among
# them). Prints the sender's wall time in ms, the bytes its interface sent
# and each process's /usr/bin/time line (wall, user, system, peak RSS).
# B: the directory of the binaries (default: this checkout's
# target/release); OUT: where the receivers write (default /tmp/mdp-push);
# PERF=FILE: profile the whole machine while the sender runs (`perf record
# -a -g`: every host shares its cores), then e.g. `perf report -i FILE
# --no-children --sort comm,sym` (release binaries are stripped: for
# symbols, `cargo build --profile profiling -p mdp-cli` and
# B=target/profiling).
# The push is signed (keys made once in KEYS, default /tmp/mdp-push-keys:
# the sender's, and one per receiver h1..hN, which trust the sender's);
# ENCRYPT=1 lists the receivers by key (--expect-file), so it is encrypted.
# RECV_ARGS: more mdp-recv arguments (split at spaces), e.g. --no-fsync.
# SLOW_CPU=PERCENT: the last receiver runs in a cpu cgroup with that share
# of one core (cgroup v2 cpu.max, or v1 cpu.cfs_quota_us), a slow host.
# Example: `head -c 256M /dev/urandom > /tmp/big.bin; benches/scripts/net.sh 2;
# benches/scripts/push.sh 1 --no-hash-cache /tmp/big.bin`.
set -e
N=${1:?usage: push.sh N [mdp-send ARGS...]}
shift
B=${B:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
OUT=${OUT:-/tmp/mdp-push}
KEYS=${KEYS:-/tmp/mdp-push-keys}
rm -rf "$OUT"
mkdir -p "$OUT" "$KEYS"
[ -f "$KEYS/sender.key" ] || "$B/mdp-send" --gen-identity "$KEYS/sender.key" >"$KEYS/sender.pub"
: >"$KEYS/expect"
for i in $(seq 1 "$N"); do
    [ -f "$KEYS/h$i.key" ] || "$B/mdp-recv" --gen-identity "$KEYS/h$i.key" >"$KEYS/h$i.pub"
    echo "h$i $(cat "$KEYS/h$i.pub")" >>"$KEYS/expect"
done
if [ "${ENCRYPT:-0}" = 1 ]; then
    group=(--expect-file "$KEYS/expect")
else
    group=(--receivers "$N")
fi
slow_group=
if [ -n "${SLOW_CPU:-}" ]; then
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        slow_group=/sys/fs/cgroup/mdp-slow
        mkdir -p $slow_group
        echo "$((SLOW_CPU * 1000)) 100000" >$slow_group/cpu.max
    else
        slow_group=/sys/fs/cgroup/cpu/mdp-slow
        mkdir -p $slow_group
        echo 100000 >$slow_group/cpu.cfs_period_us
        echo $((SLOW_CPU * 1000)) >$slow_group/cpu.cfs_quota_us
    fi
fi
for i in $(seq 1 "$N"); do
    mkdir -p "$OUT/r$i"
    cg=
    [ -n "$slow_group" ] && [ "$i" = "$N" ] && cg=$slow_group
    GROUP=$cg bash -c '[ -n "$GROUP" ] && echo $$ >"$GROUP/cgroup.procs"; exec "$@"' _ \
        ip netns exec mdpb-h$i /usr/bin/time -f "r$i %e s, %U user, %S system, %M KiB" \
        "$B/mdp-recv" --dir "$OUT/r$i" --once --json --timeout 60s \
        --interface 10.77.0.$((i + 1)) --name h$i \
        --trust "$(cat "$KEYS/sender.pub")" --identity "$KEYS/h$i.key" ${RECV_ARGS:-} >"$OUT/r$i.log" 2>&1 &
done
sleep 0.3
tx0=$(ip netns exec mdpb-h0 cat /sys/class/net/eth0/statistics/tx_bytes)
t0=$EPOCHREALTIME
profile=()
[ -n "${PERF:-}" ] && profile=(perf record -q -a -g -o "$PERF" --)
set +e
"${profile[@]}" ip netns exec mdpb-h0 /usr/bin/time -f "send %e s, %U user, %S system, %M KiB" -o "$OUT/s.time" \
    "$B/mdp-send" --interface 10.77.0.1 --identity "$KEYS/sender.key" "${group[@]}" --timeout 60s "$@" \
    >"$OUT/s.log" 2>"$OUT/s.err"
code=$?
t1=$EPOCHREALTIME
wait
set -e
tx1=$(ip netns exec mdpb-h0 cat /sys/class/net/eth0/statistics/tx_bytes)
echo "$t0 $t1" | awk '{printf "sender wall %.1f ms\n", ($2 - $1) * 1000}'
echo "sender exit $code, its interface sent $((tx1 - tx0)) bytes"
cat "$OUT/s.time"
for i in $(seq 1 "$N"); do tail -1 "$OUT/r$i.log"; done
