#!/usr/bin/env bash
# Runs the same fio jobs on a fresh Tessera mount and on the plain backing
# directory (native) in one run, and prints a Markdown table with the ratio.
# Usage: bash benches/fio/compare.sh [SIZE_PER_JOB=1g] [RUNTIME_SECONDS=20]
# Needs a release build (cargo build --release) and fio; run as root or with
# /dev/fuse accessible. Machines here are noisy: compare ratios within one run.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${1:-1g}
RUNTIME=${2:-20}
BIN=${TESSERA_BIN:-target/release/tessera}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio is missing (apt-get install fio)" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/tessera-fio.XXXXXX)
MNT="$WORK/mnt"; NATIVE="$WORK/native"; DATA="$WORK/data"
mkdir -p "$MNT" "$NATIVE" "$DATA"
MOUNT_PID=
cleanup() {
  if [ -n "$MOUNT_PID" ]; then kill -TERM "$MOUNT_PID" 2>/dev/null || true; wait "$MOUNT_PID" 2>/dev/null || true; fi
  mountpoint -q "$MNT" && (fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT") || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" --data-dir "$DATA" mount --create --size 64GiB bench "$MNT" 2>"$WORK/mount.log" &
MOUNT_PID=$!
for _ in $(seq 300); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || { cat "$WORK/mount.log" >&2; exit 1; }

run() { # name dir rw bs extra...
  local name=$1 dir=$2 rw=$3 bs=$4; shift 4
  fio --name="$name" --directory="$dir" --rw="$rw" --bs="$bs" --size="$SIZE" \
      --ioengine=psync --numjobs=1 --runtime="$RUNTIME" --time_based=0 \
      --end_fsync=1 --output-format=json "$@" 2>/dev/null
}
metric() { # json rw(read|write) -> "MiB/s IOPS"
  python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0][sys.argv[1]]; print("%.1f %.0f" % (j["bw"]/1024, j["iops"]))' "$1"
}

printf '| job | tessera MiB/s | tessera IOPS | native MiB/s | native IOPS | ratio |\n|---|---|---|---|---|---|\n'
for job in "seq-write write 1m write" "seq-read read 1m read" "rand-write randwrite 4k write" "rand-read randread 4k read"; do
  set -- $job
  name=$1 rw=$2 bs=$3 dir=$4
  t=$(run "$name" "$MNT" "$rw" "$bs" | metric "$dir")
  n=$(run "$name" "$NATIVE" "$rw" "$bs" | metric "$dir")
  set -- $t $n
  printf '| %s (%s) | %s | %s | %s | %s | %.2f |\n' "$name" "$bs" "$1" "$2" "$3" "$4" "$(python3 -c "print($1/$3 if $3 else 0)")"
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
done
