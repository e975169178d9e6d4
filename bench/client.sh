#!/usr/bin/env bash
# bench/client.sh — the registry client against skopeo, same inputs, one run.
#
# Starts a throw-away CNCF Distribution registry (docker-registry) on a free loopback port, makes
# deb:12 (a Debian rootfs as one gzip layer, ~200 MB uncompressed) and five:v1 (the same rootfs
# as 5 uncompressed layers) and times with hyperfine:
#   pull-to-oci   deb:12 registry -> OCI layout     strata copy   vs skopeo copy
#   push          five:v1 -> a fresh repo (gzip)    strata push   vs skopeo copy oci: -> docker://
#   repush        the same, strata's gzip blobs kept from the last push (reported, no target)
#   repull        deb:12 with every layer local     strata pull   vs skopeo copy into a filled layout
# It reports medians and strata/skopeo ratios; it never fails because something is slow.
#
#   bench/client.sh [--runs N] [--no-build] [--keep]
#
# Environment: STRATA (strata binary; skips the build), STRATA_BENCH_TMPDIR (scratch location),
# STRATA_BENCH_ROOTFS (default /var/cache/strata-test/bookworm-rootfs).
# Requirements: hyperfine, skopeo, python3, /usr/bin/docker-registry.
set -euo pipefail

RUNS=5
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "client.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
for tool in hyperfine skopeo python3 /usr/bin/docker-registry; do
    command -v "$tool" >/dev/null || { echo "client.sh: $tool is required" >&2; exit 1; }
done
if [ -z "${STRATA:-}" ]; then
    [ "$BUILD" = 1 ] && cargo build --release -q -p strata-cli
    STRATA=$PWD/target/release/strata
fi
"$STRATA" push --help >/dev/null 2>&1 || { echo "client.sh: $STRATA has no push command" >&2; exit 1; }

SCRATCH=$(mktemp -d "${STRATA_BENCH_TMPDIR:-${TMPDIR:-/var/tmp}}/strata-client-bench.XXXXXX")
REGISTRY_PIDS=()
cleanup() {
    local pid
    for pid in "${REGISTRY_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then echo "kept $SCRATCH"; else rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT

# Starts a registry storing under $SCRATCH/$1; sets STARTED to its host:port. (Not run in a
# command substitution: the subshell would lose REGISTRY_PIDS and the EXIT trap could not stop it.)
start_registry() {
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$SCRATCH/$1.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $SCRATCH/$1
http:
  addr: 127.0.0.1:$port
YAML
    /usr/bin/docker-registry serve "$SCRATCH/$1.yml" >"$SCRATCH/$1.log" 2>&1 &
    REGISTRY_PIDS+=($!)
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
    STARTED=127.0.0.1:$port
}
start_registry registry
REG=$STARTED
# Pushes go to a second registry whose storage is emptied before each run, so every blob is
# really uploaded (skopeo would otherwise mount blobs its cache knows from the first one).
start_registry push-registry
PUSH_REG=$STARTED

ROOTFS=${STRATA_BENCH_ROOTFS:-/var/cache/strata-test/bookworm-rootfs}
[ -d "$ROOTFS" ] || { echo "client.sh: $ROOTFS (a Debian rootfs) is required" >&2; exit 1; }
# deb:12   the Debian rootfs as one gzip layer (~200 MB uncompressed), as registries serve it.
# five:v1  the same rootfs in 5 uncompressed layers, as `strata import`/`load` store them:
#          both tools compress them (gzip) on push.
echo "== making deb:12 (one gzip layer) and five:v1 (5 uncompressed layers) from $ROOTFS"
mkdir -p "$SCRATCH/parts"
tar -C "$ROOTFS" --numeric-owner -cf "$SCRATCH/parts/all.tar" .
gzip -1 -c "$SCRATCH/parts/all.tar" > "$SCRATCH/parts/all.tar.gz"
tar -C "$ROOTFS" --numeric-owner -cf "$SCRATCH/parts/p0.tar" ./usr/lib
tar -C "$ROOTFS" --numeric-owner -cf "$SCRATCH/parts/p1.tar" ./usr/share
tar -C "$ROOTFS" --numeric-owner -cf "$SCRATCH/parts/p2.tar" ./usr/bin ./usr/sbin ./usr/libexec ./usr/include ./usr/games ./usr/local ./usr/src
tar -C "$ROOTFS" --numeric-owner -cf "$SCRATCH/parts/p3.tar" ./var
tar -C "$ROOTFS" --numeric-owner --exclude=./usr --exclude=./var -cf "$SCRATCH/parts/p4.tar" .
python3 - "$SCRATCH" <<'PY'
import hashlib, json, os, shutil, sys
scratch = sys.argv[1]
def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
def layout(out, tag, layers):
    """layers: [(blob file, media type, uncompressed tar)]"""
    os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
    def put(path):
        d = sha(path)
        shutil.copyfile(path, f"{out}/blobs/sha256/{d[7:]}")
        return d, os.path.getsize(path)
    def put_bytes(data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        open(f"{out}/blobs/sha256/{d[7:]}", "wb").write(data)
        return d, len(data)
    descs, diff_ids = [], []
    for blob, media_type, tar in layers:
        d, s = put(blob)
        descs.append({"mediaType": media_type, "digest": d, "size": s})
        diff_ids.append(sha(tar))
    cd, cs = put_bytes(json.dumps({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())
    md, ms = put_bytes(json.dumps({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs}).encode())
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": tag}}]},
        open(f"{out}/index.json", "w"))
    open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
p = f"{scratch}/parts"
layout(f"{scratch}/deb", "12", [(f"{p}/all.tar.gz", "application/vnd.oci.image.layer.v1.tar+gzip", f"{p}/all.tar")])
layout(f"{scratch}/src", "v1", [(f"{p}/p{i}.tar", "application/vnd.oci.image.layer.v1.tar", f"{p}/p{i}.tar") for i in range(5)])
PY
rm -rf "$SCRATCH/parts"
du -sh "$SCRATCH/deb" "$SCRATCH/src"
skopeo copy -q --dest-tls-verify=false "oci:$SCRATCH/deb:12" "docker://$REG/deb:12"
S="$STRATA --root $SCRATCH/store"
$S copy -q "oci:$SCRATCH/src:v1" "$PUSH_REG/bench/push:v1"
$S pull -q "$REG/deb:12" >/dev/null
skopeo copy -q --src-tls-verify=false "docker://$REG/deb:12" "oci:$SCRATCH/filled:12"

H="hyperfine --runs $RUNS --warmup 1 --style basic"
$H --export-json "$SCRATCH/pull-to-oci.json" \
    --prepare "rm -rf $SCRATCH/s-oci $SCRATCH/k-oci" \
    -n strata "$S copy -q docker://$REG/deb:12 oci:$SCRATCH/s-oci:12" \
    -n skopeo "skopeo copy -q --src-tls-verify=false docker://$REG/deb:12 oci:$SCRATCH/k-oci:12"
# strata keeps the gzip blobs a push makes; `system prune` drops them before each timed run so
# every run compresses afresh, as skopeo does.
$H --export-json "$SCRATCH/push.json" \
    --prepare "$S system prune -f >/dev/null; rm -rf $SCRATCH/push-registry/docker" \
    -n strata "$S push -q $PUSH_REG/bench/push:v1" \
    -n skopeo "skopeo copy -q --dest-tls-verify=false oci:$SCRATCH/src:v1 docker://$PUSH_REG/bench/push:v1"
# The same push again to an emptied registry, the gzip blobs kept by the last strata push this
# time (skopeo has no such cache: it compresses again). Reported, no target.
$S push -q $PUSH_REG/bench/push:v1 >/dev/null
$H --export-json "$SCRATCH/repush.json" \
    --prepare "rm -rf $SCRATCH/push-registry/docker" \
    -n strata "$S push -q $PUSH_REG/bench/push:v1" \
    -n skopeo "skopeo copy -q --dest-tls-verify=false oci:$SCRATCH/src:v1 docker://$PUSH_REG/bench/push:v1"
$H --export-json "$SCRATCH/repull.json" \
    -n strata "$S pull -q $REG/deb:12" \
    -n skopeo "skopeo copy -q --src-tls-verify=false docker://$REG/deb:12 oci:$SCRATCH/filled:12"

echo
echo "== medians (seconds) and strata/skopeo"
python3 - "$SCRATCH" <<'PY'
import json, sys
# Acceptance targets: a strata/skopeo ratio, or an absolute time for the repull.
targets = {"pull-to-oci": ("ratio", 0.5), "push": ("ratio", 0.4), "repush": None, "repull": ("seconds", 0.2)}
for name in ["pull-to-oci", "push", "repush", "repull"]:
    results = {r["command"]: r["median"] for r in json.load(open(f"{sys.argv[1]}/{name}.json"))["results"]}
    s, k = results["strata"], results["skopeo"]
    line = f"{name:12} strata {s:8.3f}  skopeo {k:8.3f}  ratio {s / k:5.2f}"
    if targets[name] is None:
        print(f"{line}  (no target: strata reuses the kept gzip blobs)")
        continue
    kind, limit = targets[name]
    met = (s / k if kind == "ratio" else s) <= limit
    target = f"{kind} <= {limit}"
    print(f"{line}  target {target:14} {'met' if met else 'NOT met'}")
PY
