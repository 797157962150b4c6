#!/bin/bash
# prof.sh N [mdp-send ARGS...]
#
# push.sh's push, with the whole machine profiled (`perf record -a -g`,
# every host shares its cores) into $OUT/perf.data; then, e.g.,
# `perf report -i /tmp/mdp-push/perf.data --no-children --sort comm,sym`.
set -e
N=${1:?usage: prof.sh N [mdp-send ARGS...]}
shift
B=${B:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
OUT=${OUT:-/tmp/mdp-push}
rm -rf "$OUT"
mkdir -p "$OUT"
for i in $(seq 1 "$N"); do
    mkdir -p "$OUT/r$i"
    ip netns exec mdpb-h$i "$B/mdp-recv" --dir "$OUT/r$i" --once --json --timeout 60s \
        --interface 10.77.0.$((i + 1)) --name h$i >"$OUT/r$i.log" 2>&1 &
done
sleep 0.3
perf record -a -g -o "$OUT/perf.data" -- ip netns exec mdpb-h0 "$B/mdp-send" \
    --interface 10.77.0.1 --receivers "$N" --timeout 60s "$@" >"$OUT/s.log" 2>"$OUT/s.err"
wait
tail -3 "$OUT/s.log"
