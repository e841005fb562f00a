#!/usr/bin/env bash
# Times `tessera snapshot create` and `tessera clone` against volume size:
# 1 GiB in 100 files and 4 GiB in 100,000 files (issue 4's table).
# Usage: bash benches/snapshot.sh   (needs target/release/tessera; root or /dev/fuse access)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TESSERA_BIN:-target/release/tessera}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d /var/tmp/tessera-snap.XXXXXX)
MOUNT_PID=
cleanup() {
  if [ -n "$MOUNT_PID" ]; then kill -TERM "$MOUNT_PID" 2>/dev/null || true; wait "$MOUNT_PID" 2>/dev/null || true; fi
  mountpoint -q "$WORK/mnt" && (fusermount3 -u -z "$WORK/mnt" 2>/dev/null || umount -l "$WORK/mnt") || true
  rm -rf "$WORK"
}
trap cleanup EXIT

fill() { # files size_each_bytes
  local files=$1 each=$2
  mkdir -p "$WORK/mnt"
  "$BIN" --data-dir "$WORK/data" mount --create --size 64GiB v "$WORK/mnt" 2>"$WORK/mount.log" &
  MOUNT_PID=$!
  for _ in $(seq 300); do mountpoint -q "$WORK/mnt" && break; sleep 0.1; done
  python3 - "$WORK/mnt" "$files" "$each" <<'PY'
import os, sys
root, files, each = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = os.urandom(1 << 20)
for i in range(files):
    d = os.path.join(root, "d%03d" % (i // 1000))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d" % i), "wb") as f:
        left = each
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n] if i % 2 else os.urandom(n) if n < 65536 else block[:n])
            left -= n
PY
  kill -TERM "$MOUNT_PID"; wait "$MOUNT_PID"; MOUNT_PID=
}

ms() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }

printf '| volume | snapshot create | clone |\n|---|---|---|\n'
for spec in "1GiB-in-100-files 100 10737418" "4GiB-in-100000-files 100000 42950"; do
  set -- $spec
  rm -rf "$WORK/data"
  fill "$2" "$3"
  s=$(ms "$BIN" --data-dir "$WORK/data" snapshot create v s)
  c=$(ms "$BIN" --data-dir "$WORK/data" clone v@s c)
  printf '| %s | %s ms | %s ms |\n' "$1" "$s" "$c"
done
