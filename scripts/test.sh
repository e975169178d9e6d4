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
cargo test --workspace --locked -- --test-threads="${STRATA_TEST_THREADS:-2}"
