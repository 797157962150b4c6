#!/bin/bash
# encrypted-vs-signed.sh [PAIRS]
#
# Signed against signed-and-encrypted pushes of 256 MiB, alternately, on
# the bench bridge of net.sh (to 1 receiver, then to 4): PAIRS pairs per
# row (default 5) after one warm-up push. Prints, per push, the receivers,
# the mode, success, the sender's elapsed_secs, the AEAD and the wire bytes
# per file byte, then the /usr/bin/time lines of push.sh. Root; the
# network is removed at the end. B as for push.sh.
set -e
cd "$(dirname "$0")"
PAIRS=${1:-5}
BIG=${BIG:-/tmp/big.bin}
[ -f "$BIG" ] || head -c 256M /dev/urandom >"$BIG"
for n in 1 4; do
    ./net.sh $((n + 1)) >/dev/null
    ./push.sh $n --no-hash-cache --json "$BIG" >/dev/null 2>&1
    for _ in $(seq 1 "$PAIRS"); do
        for enc in 0 1; do
            ENCRYPT=$enc ./push.sh $n --no-hash-cache --json "$BIG" >/tmp/mdp-pair.out 2>&1 || true
            python3 -c "
import json
v = json.load(open('${OUT:-/tmp/mdp-push}/s.log'))
print($n, 'encrypted' if $enc else 'signed', v['success'], v['elapsed_secs'], v['encryption'],
      v['stats']['wire_bytes_per_file_byte'])
"
            grep -h "user" /tmp/mdp-pair.out | tr '\n' ' '
            echo
        done
    done
done
./net.sh clean
