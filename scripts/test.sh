#!/usr/bin/env bash
# Runs the whole test suite: unit, integration (real FUSE mounts) and bench targets.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -- --nocapture  # extra arguments go to cargo test
#
# Installs missing Debian packages and Rust when run as root (see scripts/lib.sh).
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$TESSERA_ROOT"

ensure_deps
log "cargo test --workspace --all-targets $*"
cargo test --workspace --all-targets "$@"
