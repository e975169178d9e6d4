#!/usr/bin/env bash
# The main job on its embedded default: a real Debian rootfs (debootstrap) imported into the
# strata store, served by strata's own registry, pulled back into a fresh store, saved as an
# archive, and proved by `docker load` + `docker run`; then `strata build` of a small Dockerfile
# FROM that image (RUN, COPY, CMD), saved and run by docker the same way.
# Usage: scripts/main-job.sh [OUTPUT.tar]   (default: ./debian-strata.tar; STRATA=BIN skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$PWD/debian-strata.tar}
scripts/setup.sh
if [ -z "${STRATA:-}" ]; then
    cargo build --release --locked -p strata-cli
fi
strata=${STRATA:-$PWD/target/release/strata}
rootfs=${STRATA_ROOTFS_CACHE:-/var/cache/strata-test}/bookworm-rootfs
work=$(mktemp -d /tmp/strata-main.XXXXXX)
registry_pid=
cleanup() {
    [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
image=127.0.0.1:$port/strata-demo/debian:bookworm

echo "== strata import $rootfs"
"$strata" --root "$work/store" import --change 'CMD ["bash"]' "$rootfs" "$image"
"$strata" --root "$work/store" images
"$strata" --root "$work/store" history "$image"

echo "== strata registry serve on 127.0.0.1:$port; strata push"
"$strata" registry serve --addr "127.0.0.1:$port" --root "$work/registry" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
"$strata" --root "$work/store" push "$image"

echo "== strata pull into a fresh store"
"$strata" --root "$work/pulled" pull "$image"
"$strata" --root "$work/pulled" images --digests

echo "== strata save -> $out"
"$strata" --root "$work/pulled" save -o "$out" "$image"
ls -l "$out"
echo "== docker load + docker run"
docker load -i "$out"
docker run --rm "$image" cat /etc/debian_version
echo "== strata build FROM the pulled image (RUN, COPY, CMD), then docker run it"
mkdir -p "$work/ctx"
echo "built by strata from a Dockerfile" > "$work/ctx/message.txt"
cat > "$work/ctx/Dockerfile" <<DOCKERFILE
FROM $image
RUN echo "debian \$(cat /etc/debian_version)" > /etc/strata-build
COPY message.txt /srv/message.txt
CMD ["sh", "-c", "cat /srv/message.txt /etc/strata-build"]
DOCKERFILE
"$strata" --root "$work/pulled" build --progress=plain -t strata-demo/built:1 "$work/ctx"
"$strata" --root "$work/pulled" save -o "$work/built.tar" strata-demo/built:1
docker load -i "$work/built.tar"
docker run --rm strata-demo/built:1
