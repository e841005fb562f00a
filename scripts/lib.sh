# shellcheck shell=bash
# Shared helpers for scripts/*.sh and .ci/run. Source it; it defines functions only.
#
#   ensure_deps            system packages, a Rust toolchain, and a usable /dev/fuse
#   ensure_rust_components rustfmt clippy ...   (rustup components, for CI)

TESSERA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# libclang for bindgen (rocksdb's bindings are generated at build time).
have_libclang() {
    if command -v dpkg-query >/dev/null 2>&1 &&
        dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'install ok installed'; then
        return 0
    fi
    # What bindgen loads: libclang.so or libclang-N.so, never libclang-cpp (which other
    # packages install alone, and which once passed for libclang here).
    compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null ||
        compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null ||
        compgen -G '/usr/lib/*/libclang.so*' >/dev/null ||
        compgen -G '/usr/lib/*/libclang-[0-9]*.so*' >/dev/null
}

# PostgreSQL (14 or later, for pg_amcheck): Debian and Ubuntu keep its programs in
# /usr/lib/postgresql/N/bin and put only client wrappers on PATH.
have_postgres() {
    local tool
    for tool in initdb pg_ctl pgbench pg_amcheck; do
        command -v "$tool" >/dev/null 2>&1 ||
            compgen -G "/usr/lib/postgresql/*/bin/$tool" >/dev/null ||
            return 1
    done
}

# Debian packages needed to build (RocksDB's C++ via cc, bindgen via clang) and to run
# the mounts, tour, benchmarks and application tests (tests/apps.rs: git, tar, python3's
# sqlite3, PostgreSQL with pgbench and pg_amcheck). Prints the missing ones.
missing_packages() {
    local missing=()
    command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
    have_libclang || missing+=(libclang-dev)
    command -v clang >/dev/null 2>&1 || missing+=(clang)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    { command -v cc && command -v c++ && command -v make; } >/dev/null 2>&1 || missing+=(build-essential)
    command -v fio >/dev/null 2>&1 || missing+=(fio)
    command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
    command -v mountpoint >/dev/null 2>&1 || missing+=(util-linux)
    command -v git >/dev/null 2>&1 || missing+=(git)
    command -v tar >/dev/null 2>&1 || missing+=(tar)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    have_postgres || missing+=(postgresql)
    echo "${missing[*]}"
}

ensure_packages() {
    local missing
    missing="$(missing_packages)"
    [ -z "$missing" ] && return 0
    if is_root; then
        log "installing: $missing"
        # shellcheck disable=SC2086 # word splitting wanted: one package per word
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
    else
        echo "Tessera needs these packages; install them and run again:" >&2
        echo "sudo apt-get install -y $missing"
        exit 1
    fi
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "installing Rust with rustup (minimal profile)"
        curl https://sh.rustup.rs -sSf | sh -s -- -y --profile minimal
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found after installing rustup"
}

# ensure_rust_components rustfmt clippy: add rustup components that are missing.
ensure_rust_components() {
    local comp
    for comp in "$@"; do
        case "$comp" in
        rustfmt) cargo fmt --version >/dev/null 2>&1 && continue ;;
        clippy) cargo clippy --version >/dev/null 2>&1 && continue ;;
        esac
        command -v rustup >/dev/null 2>&1 || die "cargo $comp is missing and rustup is not installed"
        log "adding rustup component $comp"
        rustup component add "$comp"
    done
}

# FUSE: /dev/fuse must exist. As root, open it to everyone (so tests that drop
# privileges can mount through fusermount3) and allow `allow_other` for non-root mounts.
ensure_fuse() {
    if [ ! -e /dev/fuse ]; then
        die "FUSE tests need /dev/fuse: load the fuse module (modprobe fuse) / run the container with --device /dev/fuse (and --cap-add SYS_ADMIN)"
    fi
    if is_root; then
        chmod 0666 /dev/fuse
        if ! grep -qE '^[[:space:]]*user_allow_other' /etc/fuse.conf 2>/dev/null; then
            echo user_allow_other >>/etc/fuse.conf
        fi
    elif [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then
        echo "warning: /dev/fuse is not readable and writable by $(id -un); mounts will fail." >&2
        echo "         ask root to run: chmod 0666 /dev/fuse (or add you to the group owning it)" >&2
    fi
}

ensure_deps() {
    ensure_packages
    ensure_rust
    ensure_fuse
}
