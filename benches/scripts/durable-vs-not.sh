#!/bin/bash
# durable-vs-not.sh [PAIRS]
#
# Durable placement (the default: each file flushed before its rename, the
# push's directories before the confirmation) against `mdp-recv
# --no-fsync`, alternately, on the bench bridge of net.sh, the receivers
# writing to OUT (default /tmp/mdp-push, on the disk): 256 MiB to 1 and to
# 4 receivers, and a tree of 2,000 files of 4 KiB in 20 directories to 4.
# PAIRS pairs per row (default 5) after one warm-up push; ROWS picks rows
# (default "1 4 tree"). Prints, per push,
# the row, the mode, success and the sender's elapsed_secs. Root; the
# network is removed at the end. B as for push.sh.
set -e
cd "$(dirname "$0")"
PAIRS=${1:-5}
BIG=${BIG:-/tmp/big.bin}
TREE=${TREE:-/tmp/mdp-small-tree}
[ -f "$BIG" ] || head -c 256M /dev/urandom >"$BIG"
if [ ! -d "$TREE" ]; then
    for d in $(seq 1 20); do
        mkdir -p "$TREE/d$d"
        for f in $(seq 1 100); do head -c 4096 /dev/urandom >"$TREE/d$d/f$f"; done
    done
fi
row() { # N NAME PATH
    ./net.sh $(($1 + 1)) >/dev/null
    ./push.sh "$1" --no-hash-cache --json "$3" >/dev/null 2>&1
    for _ in $(seq 1 "$PAIRS"); do
        for mode in durable --no-fsync; do
            args=""
            [ "$mode" = durable ] || args=$mode
            RECV_ARGS=$args ./push.sh "$1" --no-hash-cache --json "$3" >/dev/null 2>&1 || true
            python3 -c "
import json
v = json.load(open('${OUT:-/tmp/mdp-push}/s.log'))
print('$2', '$mode', v['success'], v['elapsed_secs'])
"
        done
    done
}
for r in ${ROWS:-1 4 tree}; do
    case $r in
    1) row 1 "256MiB-to-1" "$BIG" ;;
    4) row 4 "256MiB-to-4" "$BIG" ;;
    tree) row 4 "2000-files-to-4" "$TREE" ;;
    esac
done
./net.sh clean
