#!/usr/bin/env bash
# bench/client.sh — the registry client against skopeo, same inputs, one run.
#
# Starts a throw-away CNCF Distribution registry (docker-registry) on a free loopback port, makes
# a 5-layer image (random, uncompressed layers) and times with hyperfine:
#   pull-to-oci   registry -> OCI layout           strata copy   vs skopeo copy
#   push          5-layer image -> a fresh repo    strata push   vs skopeo copy oci: -> docker://
#   repull        pull with every layer local      strata pull   vs skopeo copy into a filled layout
# It reports medians and strata/skopeo ratios; it never fails because something is slow.
#
#   bench/client.sh [--runs N] [--layer-mib N] [--no-build] [--keep]
#
# Environment: STRATA (strata binary; skips the build), STRATA_BENCH_TMPDIR (scratch location).
# Requirements: hyperfine, skopeo, python3, /usr/bin/docker-registry.
set -euo pipefail

RUNS=5
LAYER_MIB=32
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?}; shift ;;
        --layer-mib) LAYER_MIB=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

echo "== making a 5-layer image ($LAYER_MIB MiB per layer)"
python3 - "$SCRATCH/src" "$LAYER_MIB" <<'PY'
import hashlib, io, json, os, sys, tarfile
out, mib = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(data)
    return "sha256:" + d, len(data)
layers, diff_ids = [], []
for i in range(5):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        payload = os.urandom(mib << 20)
        info = tarfile.TarInfo(f"layer{i}/data.bin"); info.size = len(payload); info.mtime = 0
        t.addfile(info, io.BytesIO(payload))
    digest, size = blob(buf.getvalue())
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size})
    diff_ids.append(digest)
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
cd, cs = blob(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": layers}).encode()
md, ms = blob(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]},
    open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
skopeo copy -q --dest-tls-verify=false "oci:$SCRATCH/src:v1" "docker://$REG/bench/img:v1"
S="$STRATA --root $SCRATCH/store"
$S copy -q "oci:$SCRATCH/src:v1" "$PUSH_REG/bench/push:v1"
$S pull -q "$REG/bench/img:v1" >/dev/null
skopeo copy -q --src-tls-verify=false "docker://$REG/bench/img:v1" "oci:$SCRATCH/filled:v1"

H="hyperfine --runs $RUNS --warmup 1 --style basic"
$H --export-json "$SCRATCH/pull-to-oci.json" \
    --prepare "rm -rf $SCRATCH/s-oci $SCRATCH/k-oci" \
    -n strata "$S copy -q docker://$REG/bench/img:v1 oci:$SCRATCH/s-oci:v1" \
    -n skopeo "skopeo copy -q --src-tls-verify=false docker://$REG/bench/img:v1 oci:$SCRATCH/k-oci:v1"
$H --export-json "$SCRATCH/push.json" \
    --prepare "rm -rf $SCRATCH/push-registry/docker" \
    -n strata "$S push -q $PUSH_REG/bench/push:v1" \
    -n skopeo "skopeo copy -q --dest-tls-verify=false oci:$SCRATCH/src:v1 docker://$PUSH_REG/bench/push:v1"
$H --export-json "$SCRATCH/repull.json" \
    -n strata "$S pull -q $REG/bench/img:v1" \
    -n skopeo "skopeo copy -q --src-tls-verify=false docker://$REG/bench/img:v1 oci:$SCRATCH/filled:v1"

echo
echo "== medians (seconds) and strata/skopeo"
python3 - "$SCRATCH" <<'PY'
import json, sys
for name in ["pull-to-oci", "push", "repull"]:
    results = {r["command"]: r["median"] for r in json.load(open(f"{sys.argv[1]}/{name}.json"))["results"]}
    s, k = results["strata"], results["skopeo"]
    print(f"{name:12} strata {s:8.3f}  skopeo {k:8.3f}  ratio {s / k:5.2f}")
PY
