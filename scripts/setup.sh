#!/usr/bin/env bash
# Installs and starts what strata's tests and main job need on a fresh Debian 12 machine (as root):
# peer tools used as oracles (docker, skopeo, umoci), nginx (a TLS and HTTP/2 front for a
# registry), debootstrap for a real base rootfs,
# check-jsonschema for the OCI schemas; git, zstd, bzip2 and xz for ADD's sources and archives.
# Idempotent: safe to run again.
set -euo pipefail

need_apt=()
for tool in skopeo:skopeo umoci:umoci dockerd:docker.io debootstrap:debootstrap busybox:busybox-static \
            hyperfine:hyperfine jq:jq docker-registry:docker-registry podman:podman htpasswd:apache2-utils curl:curl openssl:openssl \
            git:git zstd:zstd bzip2:bzip2 xz:xz-utils nginx:nginx-light; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool#*:}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! command -v check-jsonschema >/dev/null 2>&1; then
    echo "setup: installing check-jsonschema"
    pip install -q check-jsonschema
fi
# moto_server: a local S3 for the registry's S3 backend tests.
if ! command -v moto_server >/dev/null 2>&1; then
    echo "setup: installing moto[server]"
    pip install -q 'moto[server]'
fi
# oras (the Python SDK): pushes artifacts with a subject to the registry in its interop test.
if ! python3 -c 'import oras.client' >/dev/null 2>&1; then
    echo "setup: installing oras"
    pip install -q oras
fi

# dockerd: the peer that must load and run what strata saves.
if ! docker info >/dev/null 2>&1; then
    echo "setup: starting dockerd"
    (dockerd >/var/log/strata-dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start; see /var/log/strata-dockerd.log" >&2; exit 1; }
fi

# A Debian minbase rootfs, cached outside the clone (debootstrap takes ~2 minutes).
ROOTFS_CACHE=${STRATA_ROOTFS_CACHE:-/var/cache/strata-test}
ROOTFS="$ROOTFS_CACHE/bookworm-rootfs"
if [ ! -f "$ROOTFS/etc/debian_version" ]; then
    echo "setup: debootstrap bookworm minbase into $ROOTFS"
    mkdir -p "$ROOTFS_CACHE"
    rm -rf "$ROOTFS.tmp"
    debootstrap --variant=minbase bookworm "$ROOTFS.tmp" http://deb.debian.org/debian >"$ROOTFS_CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$ROOTFS_CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$ROOTFS"
    mv "$ROOTFS.tmp" "$ROOTFS"
fi
echo "setup: ready (rootfs $ROOTFS)"
