#!/usr/bin/env bash
# Runs every test: unit and data-driven tests of each crate, then the CLI integration tests,
# including interop with docker, skopeo and umoci and the OCI JSON schemas. Sets up the machine
# first (scripts/setup.sh), so a fresh Debian 12 machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export STRATA_TEST_ROOTFS=${STRATA_TEST_ROOTFS:-${STRATA_ROOTFS_CACHE:-/var/cache/strata-test}/bookworm-rootfs}
# Peers are installed above: their tests must run, not skip.
export STRATA_REQUIRE_PEERS=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Library, binary and integration tests (doc examples are not tests here).
status=0
cargo test --workspace --locked --lib --bins --tests -- --test-threads="${STRATA_TEST_THREADS:-2}" 2>&1 | tee "$log" || status=$?
# One closing line over all test binaries, so a reader need not add them up.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
