#!/usr/bin/env bash
# A guided tour of Tessera on a throwaway pool: build, create a volume, mount it,
# write and copy 64 MiB (deduplicated to one copy), unmount, remount and verify.
#
#   bash scripts/tour.sh            (installs missing Debian packages and Rust as root;
#                                    as a user it prints the sudo apt-get line to run)
#
# Environment: TOUR_MIB (default 64) sets the file size; KEEP=1 keeps the temp dir;
# TOUR_PROFILE=dev uses a debug build (faster to build when one exists) instead of release;
# TESSERA_BIN=/path/to/tessera skips the build and tours that binary.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$TESSERA_ROOT"

MIB="${TOUR_MIB:-64}"

ensure_deps

if [ -n "${TESSERA_BIN:-}" ]; then
    BIN="$TESSERA_BIN"
else
    case "${TOUR_PROFILE:-release}" in
    release) profile_flag=(--release) profile_dir=release ;;
    dev | debug) profile_flag=() profile_dir=debug ;;
    *) die "TOUR_PROFILE must be release or dev" ;;
    esac
    log "building tessera (${profile_dir}; the first build compiles RocksDB and takes a while)"
    cargo build "${profile_flag[@]}" --bin tessera
    BIN="${CARGO_TARGET_DIR:-$TESSERA_ROOT/target}/$profile_dir/tessera"
fi
[ -x "$BIN" ] || die "no binary at $BIN"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-tour.XXXXXX")"
DATA="$WORK/data"
MNT="$WORK/mnt"
mkdir -p "$DATA" "$MNT"
MOUNT_PID=""

is_mounted() { awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; }

cleanup() {
    local rc=$?
    set +e
    if [ -n "$MOUNT_PID" ] && kill -0 "$MOUNT_PID" 2>/dev/null; then
        kill -TERM "$MOUNT_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$MOUNT_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$MOUNT_PID" 2>/dev/null
        wait "$MOUNT_PID" 2>/dev/null
    fi
    if is_mounted "$MNT"; then
        fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    [ "$rc" -eq 0 ] || echo "tour FAILED (exit $rc)" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t() {
    printf '\n$ tessera %s\n' "$*"
    "$BIN" --data-dir "$DATA" "$@"
}

start_mount() {
    printf '\n$ tessera mount demo %s &\n' "$MNT"
    "$BIN" --data-dir "$DATA" mount demo "$MNT" "$@" &
    MOUNT_PID=$!
    local i
    for i in $(seq 300); do
        if is_mounted "$MNT"; then
            log "mounted $MNT (pid $MOUNT_PID) after $((i / 10)).$((i % 10)) s"
            return 0
        fi
        if ! kill -0 "$MOUNT_PID" 2>/dev/null; then
            local rc=0
            wait "$MOUNT_PID" || rc=$?
            MOUNT_PID=""
            die "tessera mount exited with status $rc before the mount appeared"
        fi
        sleep 0.1
    done
    die "timed out after 30 s waiting for $MNT to be mounted"
}

stop_mount() {
    log "unmounting: SIGTERM to pid $MOUNT_PID"
    kill -TERM "$MOUNT_PID"
    local rc=0
    wait "$MOUNT_PID" || rc=$?
    MOUNT_PID=""
    [ "$rc" -eq 0 ] || die "tessera mount exited with status $rc after SIGTERM"
    if is_mounted "$MNT"; then
        die "$MNT is still mounted after the server exited"
    fi
}

log "pool in $DATA"
t volume create demo --size 1GiB --chunk-size 1MiB --compression lz4
t volume list

start_mount

printf '\n$ dd if=/dev/urandom of=%s/a.bin bs=1M count=%s\n' "$MNT" "$MIB"
dd if=/dev/urandom of="$MNT/a.bin" bs=1M count="$MIB" status=none
printf '$ cp a.bin b.bin\n'
cp "$MNT/a.bin" "$MNT/b.bin"
sync -f "$MNT/b.bin"
(cd "$MNT" && sha256sum a.bin b.bin) | tee "$WORK/sums"
[ "$(awk '{print $1}' "$WORK/sums" | sort -u | wc -l)" -eq 1 ] || die "the copy differs from the original"

printf '\n$ df -h %s\n' "$MNT"
df -h "$MNT"
ls -l "$MNT"

# The mount holds the pool; these commands reach it through its admin socket.
t usage
ratio="$("$BIN" --data-dir "$DATA" --json usage | tr -d ' \n' | sed -n 's/.*"dedup_ratio":\([0-9.eE+-]*\).*/\1/p')"
awk -v r="$ratio" 'BEGIN { exit !(r >= 1.9 && r <= 2.1) }' ||
    die "expected a dedup ratio of about 2 after copying the file, got '${ratio}'"
log "dedup ratio $ratio: two files, one copy of their chunks"

stop_mount
t volume info demo

log "remounting and verifying the checksums survived"
start_mount
(cd "$MNT" && sha256sum -c "$WORK/sums")
stop_mount

t fsck

cat <<EOF

Tour complete: the data survived an unmount and a remount, and its copy cost no space.

Using tessera mount for real:
  tessera volume create mydata --size 20GiB
  mkdir -p ~/mnt/mydata
  tessera mount mydata ~/mnt/mydata          # serves in the foreground
  # ... use ~/mnt/mydata from another shell ...
  # stop with Ctrl-C, or: fusermount3 -u ~/mnt/mydata
  tessera usage

The pool lives in --data-dir / \$TESSERA_DATA_DIR (default /var/lib/tessera as root,
else ~/.local/share/tessera). Binary: $BIN
EOF
