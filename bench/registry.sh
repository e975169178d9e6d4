#!/usr/bin/env bash
# bench/registry.sh — `strata registry serve` against CNCF Distribution (docker-registry), same
# inputs, one run. Both servers get a fresh root on a free loopback port and the same content:
# a small image (tag "v1") and a blob of --blob-mib MiB. Then:
#   manifest-get   wrk (--connections, 64): GET /v2/bench/manifests/v1 (by tag)
#   blob-get-small wrk: GET of the config blob (~80 bytes)
#   blob-get-1m    wrk: GET of a 1 MiB blob
#   errors-256     wrk at --high-connections (256): manifest-get again, with wrk's error counts
#                  (socket connect/read/write/timeout errors, non-2xx answers) for each server
#   push-blob      curl: monolithic upload (POST + PUT) of the large blob, digest verified,
#                  median of --runs; MB/s (ratio = strata/distribution throughput)
#                  Push and pull times are curl's own time_total (from connecting to the last
#                  byte), summed over the POST and PUT of a push: curl's process start-up
#                  (~7 ms here, the same for both servers) is not the server's throughput.
#   pull-blob      curl: GET of the large blob, median of --pull-runs (15); MB/s (same ratio).
#                  More rounds than the push: a 256 MiB pull takes only 60-150 ms on loopback,
#                  so one round's time is easily moved by curl's start-up or by another process
#                  taking a core of a small machine; the median of 15 alternating rounds is
#                  stable to a few percent where that of 5 was not (costs ~3 s more).
#   peak-rss       VmHWM of each server process after all the load above (ratio =
#                  strata/distribution; below 1 means strata used less)
#   token-auth     wrk: manifest-get on a second strata server with `--auth token` (Bearer token
#                  from its /token endpoint on every request) against the open one: the cost of
#                  verifying a token per request (ratio = token/open)
# It prints requests/s (or MB/s) and strata/distribution ratios; it never fails on slowness.
#
#   bench/registry.sh [--duration S] [--connections N] [--high-connections N] [--runs N]
#                     [--pull-runs N] [--blob-mib N] [--no-build]
#
# Environment: STRATA (strata binary; skips the build), STRATA_BENCH_TMPDIR (scratch location).
# Requirements: wrk, curl, sha256sum, /usr/bin/docker-registry.
set -euo pipefail

DURATION=5
CONNECTIONS=64
HIGH_CONNECTIONS=256
RUNS=5
PULL_RUNS=15
BLOB_MIB=256
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=${2:?}; shift ;;
        --connections) CONNECTIONS=${2:?}; shift ;;
        --high-connections) HIGH_CONNECTIONS=${2:?}; shift ;;
        --runs) RUNS=${2:?}; shift ;;
        --pull-runs) PULL_RUNS=${2:?}; shift ;;
        --blob-mib) BLOB_MIB=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
STRATA_PID=$!
PIDS+=("$STRATA_PID")
DIST_PORT=$(free_port)
cat >"$SCRATCH/distribution.yml" <<YAML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $SCRATCH/distribution-root }, delete: { enabled: true } }
http: { addr: 127.0.0.1:$DIST_PORT }
YAML
/usr/bin/docker-registry serve "$SCRATCH/distribution.yml" >"$SCRATCH/distribution.log" 2>&1 &
DIST_PID=$!
PIDS+=("$DIST_PID")
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
push_blob() { # port repo file digest -> seconds curl spent on the POST and the PUT
    local location post put
    post=$(curl -sf -X POST -D "$SCRATCH/post-headers" -o /dev/null -w '%{time_total}' \
        "http://127.0.0.1:$1/v2/$2/blobs/uploads/")
    location=$(tr -d '\r' < "$SCRATCH/post-headers" | sed -n 's/^[Ll]ocation: //p')
    case "$location" in http*) ;; *) location="http://127.0.0.1:$1$location" ;; esac
    case "$location" in *\?*) location="$location&digest=$4" ;; *) location="$location?digest=$4" ;; esac
    # -T streams the file (--data-binary would read it whole first); no Expect round trip.
    put=$(curl -sf -X PUT -H 'Expect:' -H 'Content-Type: application/octet-stream' -T "$3" \
        "$location" -o /dev/null -w '%{time_total}')
    awk -v a="$post" -v b="$put" 'BEGIN { printf "%.4f\n", a + b }'
}
for port in "$STRATA_PORT" "$DIST_PORT"; do
    push_blob "$port" bench "$SCRATCH/config" "$CONFIG" >/dev/null
    push_blob "$port" bench "$SCRATCH/layer" "$LAYER" >/dev/null
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
wrk_run() { # connections port path [wrk header] -> wrk's report
    wrk -t2 -c"$1" -d"${DURATION}s" ${4:+-H "$4"} "http://127.0.0.1:$2$3"
}
rate() { # port path [wrk header]
    wrk_run "$CONNECTIONS" "$@" | awk '/Requests\/sec/ {print $2}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
mbps() { awk -v mib="$BLOB_MIB" -v s="$1" 'BEGIN { if (s > 0) printf "%.0f", mib * 1.048576 / s; else print "n/a" }'; }

printf '%-14s %14s %14s %8s\n' benchmark strata distribution ratio
for case in manifest-get blob-get-small blob-get-1m; do
    case "$case" in
        manifest-get) path=/v2/bench/manifests/v1 ;;
        blob-get-small) path=/v2/bench/blobs/$CONFIG ;;
        blob-get-1m) path=/v2/bench/blobs/$LAYER ;;
    esac
    s=$(rate "$STRATA_PORT" "$path")
    d=$(rate "$DIST_PORT" "$path")
    printf '%-14s %12s/s %12s/s %8s  (%d connections)\n' "$case" "$s" "$d" "$(ratio "$s" "$d")" "$CONNECTIONS"
done

# wrk prints "Socket errors: connect C, read R, write W, timeout T" and "Non-2xx or 3xx
# responses: N" only when there were any.
errors() { # port -> "req/s errors" with errors = socket errors + non-2xx
    wrk_run "$HIGH_CONNECTIONS" "$1" /v2/bench/manifests/v1 | awk '
        /Requests\/sec/ { rps = $2 }
        /Socket errors/ { gsub(",", ""); socket = $4 + $6 + $8 + $10 }
        /Non-2xx/ { non2xx = $NF }
        END { printf "%s %d %d\n", rps, socket, non2xx }'
}
read -r s_rps s_socket s_non2xx < <(errors "$STRATA_PORT")
read -r d_rps d_socket d_non2xx < <(errors "$DIST_PORT")
printf '%-14s %12s/s %12s/s %8s  (%d connections)\n' errors-256 "$s_rps" "$d_rps" "$(ratio "$s_rps" "$d_rps")" "$HIGH_CONNECTIONS"
printf '%-14s %14s %14s %8s  (socket errors / non-2xx answers at %d connections)\n' errors-256 \
    "$s_socket/$s_non2xx" "$d_socket/$d_non2xx" - "$HIGH_CONNECTIONS"

pull_blob() { # port -> seconds curl spent on the GET
    curl -sf -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$1/v2/push1/blobs/$BIG"
}
# Rounds alternate between the servers so that both see the same machine state; every push
# goes to a fresh repository (the blob bytes already exist from round 2 on for both servers).
s_push=(); d_push=(); s_pull=(); d_pull=()
for round in $(seq 1 "$RUNS"); do
    s_push+=("$(push_blob "$STRATA_PORT" "push$round" "$SCRATCH/big" "$BIG")")
    d_push+=("$(push_blob "$DIST_PORT" "push$round" "$SCRATCH/big" "$BIG")")
done
for round in $(seq 1 "$PULL_RUNS"); do
    s_pull+=("$(pull_blob "$STRATA_PORT")")
    d_pull+=("$(pull_blob "$DIST_PORT")")
done
# The pulled bytes are the pushed ones.
for port in "$STRATA_PORT" "$DIST_PORT"; do
    got=$(curl -sf "http://127.0.0.1:$port/v2/push1/blobs/$BIG" | sha256sum | cut -d' ' -f1)
    [ "sha256:$got" = "$BIG" ] || { echo "registry.sh: port $port served the wrong bytes" >&2; exit 1; }
done
for kind in push pull; do
    declare -n s_times="s_$kind" d_times="d_$kind"
    s=$(printf '%s\n' "${s_times[@]}" | median)
    d=$(printf '%s\n' "${d_times[@]}" | median)
    rounds=$RUNS; [ "$kind" = pull ] && rounds=$PULL_RUNS
    printf '%-14s %10s MB/s %10s MB/s %8s  (%d MiB blob, median of %d: %ss vs %ss; ratio = strata/distribution)\n' \
        "$kind-blob" "$(mbps "$s")" "$(mbps "$d")" "$(ratio "$d" "$s")" "$BLOB_MIB" "$rounds" "$s" "$d"
    unset -n s_times d_times
done

# Peak resident memory of each server over everything above.
hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
s=$(hwm "$STRATA_PID")
d=$(hwm "$DIST_PID")
printf '%-14s %11s MiB %11s MiB %8s  (VmHWM after the load; ratio = strata/distribution)\n' \
    peak-rss "$((s / 1024))" "$((d / 1024))" "$(ratio "$s" "$d")"

open=$(rate "$STRATA_PORT" /v2/bench/manifests/v1)
token=$(rate "$TOKEN_PORT" /v2/bench/manifests/v1 "Authorization: Bearer $TOKEN")
printf '%-14s %12s/s %12s/s %8s  (strata --auth token vs strata open; ratio = token/open)\n' \
    token-auth "$token" "$open" "$(ratio "$token" "$open")"
