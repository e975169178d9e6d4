#!/usr/bin/env bash
# bench/registry.sh — `strata registry serve` against CNCF Distribution (docker-registry), same
# inputs, one run. Both servers get a fresh root on a free loopback port and the same content:
# a small image (tag "v1") and a blob of --blob-mib MiB. Then:
#   manifest-get   wrk: GET /v2/bench/manifests/v1 (by tag)
#   blob-get-small wrk: GET of the config blob (~80 bytes)
#   blob-get-1m    wrk: GET of a 1 MiB blob
#   push-blob      curl: monolithic upload of the large blob (digest verified), median of N
#   token-auth     wrk: manifest-get on a second strata server with `--auth token` (Bearer token
#                  from its /token endpoint on every request) against the open one: the cost of
#                  verifying a token per request (ratio = token/open)
# It prints requests/s (or seconds) and strata/distribution ratios; it never fails on slowness.
#
#   bench/registry.sh [--duration S] [--connections N] [--runs N] [--blob-mib N] [--no-build]
#
# Environment: STRATA (strata binary; skips the build), STRATA_BENCH_TMPDIR (scratch location).
# Requirements: wrk, curl, sha256sum, /usr/bin/docker-registry.
set -euo pipefail

DURATION=5
CONNECTIONS=32
RUNS=3
BLOB_MIB=256
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=${2:?}; shift ;;
        --connections) CONNECTIONS=${2:?}; shift ;;
        --runs) RUNS=${2:?}; shift ;;
        --blob-mib) BLOB_MIB=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "registry.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
for tool in wrk curl sha256sum /usr/bin/docker-registry; do
    command -v "$tool" >/dev/null || { echo "registry.sh: $tool is required" >&2; exit 2; }
done
if [ -z "${STRATA:-}" ]; then
    if [ "$BUILD" = 1 ]; then cargo build --release -q -p strata-cli; fi
    STRATA=$PWD/target/release/strata
fi

SCRATCH=$(mktemp -d "${STRATA_BENCH_TMPDIR:-${TMPDIR:-/var/tmp}}/strata-registry-bench.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/v2/" >/dev/null && return 0; sleep 0.1; done; echo "server on $1 did not start" >&2; exit 1; }

STRATA_PORT=$(free_port)
"$STRATA" registry serve --addr "127.0.0.1:$STRATA_PORT" --root "$SCRATCH/strata-root" 2>"$SCRATCH/strata.log" &
PIDS+=($!)
DIST_PORT=$(free_port)
cat >"$SCRATCH/distribution.yml" <<YAML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $SCRATCH/distribution-root }, delete: { enabled: true } }
http: { addr: 127.0.0.1:$DIST_PORT }
YAML
/usr/bin/docker-registry serve "$SCRATCH/distribution.yml" >"$SCRATCH/distribution.log" 2>&1 &
PIDS+=($!)
wait_up "$STRATA_PORT"
wait_up "$DIST_PORT"

# A token-authenticated strata: user bench, every permission (the default grants).
TOKEN_PORT=$(free_port)
printf 'benchpw\n' | "$STRATA" registry passwd bench >"$SCRATCH/htpasswd"
"$STRATA" registry serve --addr "127.0.0.1:$TOKEN_PORT" --root "$SCRATCH/strata-token-root" \
    --htpasswd "$SCRATCH/htpasswd" --auth token 2>"$SCRATCH/strata-token.log" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$TOKEN_PORT/healthz" && break; sleep 0.1; done
TOKEN=$(curl -sf -u bench:benchpw \
    "http://127.0.0.1:$TOKEN_PORT/token?service=strata-registry&scope=repository:bench:pull,push" |
    sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[ -n "$TOKEN" ] || { echo "registry.sh: no token from the token server" >&2; exit 1; }

# Content: a config, a 1 MiB layer, a manifest; and the large blob for the push timing.
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$SCRATCH/config"
head -c $((1 << 20)) /dev/urandom >"$SCRATCH/layer"
head -c $((BLOB_MIB << 20)) /dev/urandom >"$SCRATCH/big"
digest() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
CONFIG=$(digest "$SCRATCH/config"); LAYER=$(digest "$SCRATCH/layer"); BIG=$(digest "$SCRATCH/big")
cat >"$SCRATCH/manifest" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$CONFIG","size":$(stat -c %s "$SCRATCH/config")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"$LAYER","size":$((1 << 20))}]}
JSON

# Monolithic upload the way Distribution 2.8 accepts it: POST for a session, PUT with the body.
push_blob() { # port repo file digest
    local location
    location=$(curl -sf -X POST -D - -o /dev/null "http://127.0.0.1:$1/v2/$2/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    case "$location" in http*) ;; *) location="http://127.0.0.1:$1$location" ;; esac
    case "$location" in *\?*) location="$location&digest=$4" ;; *) location="$location?digest=$4" ;; esac
    curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$3" "$location" -o /dev/null
}
for port in "$STRATA_PORT" "$DIST_PORT"; do
    push_blob "$port" bench "$SCRATCH/config" "$CONFIG"
    push_blob "$port" bench "$SCRATCH/layer" "$LAYER"
    curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary "@$SCRATCH/manifest" "http://127.0.0.1:$port/v2/bench/manifests/v1" -o /dev/null
done
# The token server's copy: the manifest alone is enough for manifest-get.
for file in config layer; do
    location=$(curl -sf -X POST -D - -o /dev/null -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$TOKEN_PORT/v2/bench/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    curl -sf -X PUT -H "Authorization: Bearer $TOKEN" --data-binary "@$SCRATCH/$file" \
        "http://127.0.0.1:$TOKEN_PORT$location?digest=$(digest "$SCRATCH/$file")" -o /dev/null
done
curl -sf -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "@$SCRATCH/manifest" "http://127.0.0.1:$TOKEN_PORT/v2/bench/manifests/v1" -o /dev/null

# (No HEAD case: wrk's parser waits for the body a HEAD answer announces but never sends.)
rate() { # port path [wrk header]
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" ${3:+-H "$3"} "http://127.0.0.1:$1$2" | awk '/Requests\/sec/ {print $2}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

printf '%-14s %14s %14s %8s\n' benchmark strata distribution ratio
for case in manifest-get blob-get-small blob-get-1m; do
    case "$case" in
        manifest-get) path=/v2/bench/manifests/v1 ;;
        blob-get-small) path=/v2/bench/blobs/$CONFIG ;;
        blob-get-1m) path=/v2/bench/blobs/$LAYER ;;
    esac
    s=$(rate "$STRATA_PORT" "$path")
    d=$(rate "$DIST_PORT" "$path")
    printf '%-14s %12s/s %12s/s %8s\n' "$case" "$s" "$d" "$(ratio "$s" "$d")"
done

median_push() { # port
    local times=() i start end
    for i in $(seq 1 "$RUNS"); do
        start=$(date +%s.%N)
        push_blob "$1" "push$i" "$SCRATCH/big" "$BIG"
        end=$(date +%s.%N)
        times+=("$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
s=$(median_push "$STRATA_PORT")
d=$(median_push "$DIST_PORT")
# Lower is better for times: the ratio is distribution/strata so >1 means strata is faster.
printf '%-14s %13ss %13ss %8s  (push of %d MiB; ratio = distribution/strata)\n' push-blob "$s" "$d" "$(ratio "$d" "$s")" "$BLOB_MIB"

open=$(rate "$STRATA_PORT" /v2/bench/manifests/v1)
token=$(rate "$TOKEN_PORT" /v2/bench/manifests/v1 "Authorization: Bearer $TOKEN")
printf '%-14s %12s/s %12s/s %8s  (strata --auth token vs strata open; ratio = token/open)\n' \
    token-auth "$token" "$open" "$(ratio "$token" "$open")"
