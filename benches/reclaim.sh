#!/usr/bin/env bash
# Disk space given back: mount a fresh pool, write 1 GiB of random data (dd, fsync at end) and
# 2,000 files of 3,000 bytes, delete everything, run `tessera gc` through the admin socket, and
# print du -sk of the pool at each step, the dd time and the daemon's peak RSS.
# Usage: bash benches/reclaim.sh [BIN]   (default: target/release/tessera, built when missing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ $# -eq 0 ] && [ ! -x target/release/tessera ]; then cargo build --release --bin tessera; fi
BIN=$(realpath "${1:-target/release/tessera}"); W=$(mktemp -d /var/tmp/reclaim.XXXX); D=$W/data; M=$W/mnt
mkdir -p $D $M
du_k() { du -sk "$D" | cut -f1; }
setsid "$BIN" --data-dir $D mount --create --size 64GiB v $M 2>$W/log &
P=$!
trap 'kill -TERM $P 2>/dev/null; wait $P 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 300); do mountpoint -q $M && break; sleep 0.1; done
mountpoint -q $M || { cat $W/log >&2; echo "reclaim.sh: the mount did not come up" >&2; exit 1; }
empty=$(du_k)
t0=$(date +%s%N)
dd if=/dev/urandom of=$M/big bs=1M count=1024 conv=fsync status=none
t1=$(date +%s%N)
mkdir $M/small; for i in $(seq 2000); do head -c 3000 /dev/urandom > $M/small/$i; done; sync -f $M
full=$(du_k)
rm -rf $M/big $M/small; sync -f $M
before_gc=$(du_k)
gc=$("$BIN" --data-dir $D --json gc | tr -d "\n ")
after=$(du_k)
peak=$(awk '/^VmHWM/ {print $2}' /proc/$P/status)
echo "empty=${empty}K full=${full}K after_rm=${before_gc}K after_gc=${after}K seq_write_1GiB_ms=$(( (t1-t0)/1000000 )) peak_rss=${peak}K gc=$gc"
