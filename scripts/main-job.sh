#!/usr/bin/env bash
# The main job on its embedded default: a real Debian rootfs (debootstrap) imported into the
# strata store, saved as an archive, and proved by `docker load` + `docker run`.
# Usage: scripts/main-job.sh [OUTPUT.tar]   (default: ./debian-strata.tar)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$PWD/debian-strata.tar}
scripts/setup.sh
cargo build --release --locked -p strata-cli
strata=$PWD/target/release/strata
rootfs=${STRATA_ROOTFS_CACHE:-/var/cache/strata-test}/bookworm-rootfs
root=$(mktemp -d /tmp/strata-main.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "== strata import $rootfs"
"$strata" --root "$root" import --change 'CMD ["bash"]' "$rootfs" strata-demo/debian:bookworm
"$strata" --root "$root" images
"$strata" --root "$root" history strata-demo/debian:bookworm
echo "== strata save -> $out"
"$strata" --root "$root" save -o "$out" strata-demo/debian:bookworm
ls -l "$out"
echo "== docker load + docker run"
docker load -i "$out"
docker run --rm strata-demo/debian:bookworm cat /etc/debian_version
