#!/usr/bin/env bash
# bench/store.sh — strata's performance acceptance benchmark.
#
# Runs strata and its peer tools (docker, skopeo, sha256sum/openssl, GNU tar, umoci) on the
# same inputs in one run and prints medians and ratios. It never asserts timings: it reports.
# See bench/README.md for what each number means.
#
#   bench/store.sh [--quick] [--runs N] [--digest-mib N] [--only LIST] [--no-build]
#                  [--digest-on-disk] [--report FILE] [--keep]
#
# Environment: STRATA (strata binary; skips the build), STRATA_BENCH_ROOTFS (Debian rootfs dir,
# default /var/cache/strata-test/bookworm-rootfs), STRATA_BENCH_TMPDIR (where the scratch dir
# goes, default $TMPDIR or /var/tmp), DEBIAN_MIRROR (for debootstrap when the rootfs is missing).
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------
RUNS=5
WARMUP=1
DIGEST_MIB=1024
ONLY="load,save,digest,apply"
BUILD=1
DIGEST_ON_TMPFS=1
REPORT=""
KEEP=0

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

Options:
  --quick            3 runs per command and a 256 MiB digest file (a smoke run, ~3 minutes)
  --runs N           hyperfine --runs N (default 5; always --warmup 1)
  --digest-mib N     size of the random file for the digest benchmark (default 1024)
  --only LIST        comma-separated subset of: load,save,digest,apply (default: all)
  --no-build         do not run `cargo build --release -p strata-cli` first
  --digest-on-disk   put the digest benchmark's store on the scratch disk instead of /dev/shm
  --report FILE      also write the final summary to FILE
  --keep             keep the scratch directory (hyperfine JSON exports, archives) for inspection
  -h, --help         this help
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) RUNS=3; DIGEST_MIB=256 ;;
        --runs) RUNS=${2:?--runs needs a number}; shift ;;
        --runs=*) RUNS=${1#*=} ;;
        --digest-mib) DIGEST_MIB=${2:?--digest-mib needs a number}; shift ;;
        --digest-mib=*) DIGEST_MIB=${1#*=} ;;
        --only) ONLY=${2:?--only needs a list}; shift ;;
        --only=*) ONLY=${1#*=} ;;
        --no-build) BUILD=0 ;;
        --digest-on-disk) DIGEST_ON_TMPFS=0 ;;
        --report) REPORT=${2:?--report needs a file}; shift ;;
        --report=*) REPORT=${1#*=} ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "store.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

case "$RUNS" in ''|*[!0-9]*) echo "store.sh: --runs must be a positive integer" >&2; exit 2 ;; esac
case "$DIGEST_MIB" in ''|*[!0-9]*) echo "store.sh: --digest-mib must be a positive integer" >&2; exit 2 ;; esac
[ "$RUNS" -ge 2 ] || { echo "store.sh: --runs must be at least 2" >&2; exit 2; }
[ "$DIGEST_MIB" -ge 1 ] || { echo "store.sh: --digest-mib must be at least 1" >&2; exit 2; }
for part in ${ONLY//,/ }; do
    case "$part" in load|save|digest|apply) ;; *) echo "store.sh: --only: unknown benchmark '$part'" >&2; exit 2 ;; esac
done
wants() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
ROOTFS=${STRATA_BENCH_ROOTFS:-/var/cache/strata-test/bookworm-rootfs}
TMPBASE=${STRATA_BENCH_TMPDIR:-${TMPDIR:-/var/tmp}}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# The image name used in docker and in strata's stores. Deliberately not `deb:12`: the
# script `docker rmi -f`s it, so it must not be a name a user might already have.
IMAGE=strata-bench/deb:12
LAYOUT_REL=repositories/docker.io/strata-bench/deb   # strata's per-repository OCI layout
DIGEST_IMAGE=strata-bench/digest:1

say() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf '\nstore.sh: error: %s\n' "$*" >&2; exit 1; }
q() { printf '%q' "$1"; }

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed ($2)"; }
need hyperfine "apt-get install hyperfine"
need python3 "apt-get install python3"
need tar "apt-get install tar"
tar --version 2>/dev/null | head -n1 | grep -q 'GNU tar' || die "GNU tar is required (found: $(tar --version | head -n1))"
if wants load || wants save; then
    need docker "install Docker and start dockerd"
    need skopeo "apt-get install skopeo"
    docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable ('docker info' fails); start dockerd"
fi
wants digest && need sha256sum "apt-get install coreutils"
wants digest && need dd "apt-get install coreutils"
HAVE_OPENSSL=0; command -v openssl >/dev/null 2>&1 && HAVE_OPENSSL=1
HAVE_UMOCI=0; command -v umoci >/dev/null 2>&1 && HAVE_UMOCI=1

# ---------------------------------------------------------------------------------------------
# strata binary
# ---------------------------------------------------------------------------------------------
if [ -n "${STRATA:-}" ]; then
    [ -x "$STRATA" ] || die "STRATA=$STRATA is not an executable"
else
    STRATA=$REPO_ROOT/target/release/strata
    if [ "$BUILD" = 1 ]; then
        need cargo "install Rust from https://rustup.rs"
        say "Building strata: cargo build --release -p strata-cli"
        (cd "$REPO_ROOT" && cargo build --release -p strata-cli) \
            || die "cargo build --release -p strata-cli failed (see above)"
    fi
    [ -x "$STRATA" ] || die "$STRATA not found; run 'cargo build --release -p strata-cli' or set STRATA"
fi
STRATA=$(cd "$(dirname "$STRATA")" && pwd)/$(basename "$STRATA")
"$STRATA" --version >/dev/null 2>&1 || die "'$STRATA --version' fails"

# ---------------------------------------------------------------------------------------------
# Debian rootfs
# ---------------------------------------------------------------------------------------------
if wants load || wants save || wants apply; then
    if [ ! -x "$ROOTFS/bin/sh" ]; then
        need debootstrap "apt-get install debootstrap"
        [ "$(id -u)" = 0 ] || die "the rootfs $ROOTFS is missing and debootstrap needs root"
        say "Creating the Debian bookworm minbase rootfs at $ROOTFS (debootstrap, needs network)"
        rm -rf "$ROOTFS.partial"
        mkdir -p "$(dirname "$ROOTFS")"
        debootstrap --variant=minbase bookworm "$ROOTFS.partial" "$MIRROR" \
            || die "debootstrap failed; remove $ROOTFS.partial and retry"
        mv "$ROOTFS.partial" "$ROOTFS"
    fi
fi

# ---------------------------------------------------------------------------------------------
# Scratch space and cleanup
# ---------------------------------------------------------------------------------------------
mkdir -p "$TMPBASE"
WORK=$(mktemp -d "$TMPBASE/strata-bench.XXXXXX")
SHM=""
DOCKER_IMAGE_OURS=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$DOCKER_IMAGE_OURS" = 1 ]; then
        docker rmi -f "$IMAGE" >/dev/null 2>&1 || true
    fi
    [ -n "$SHM" ] && rm -rf "$SHM"
    if [ "$KEEP" = 1 ]; then
        echo "store.sh: kept the scratch directory $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "store.sh: interrupted, cleaning up" >&2; exit 130' INT
trap 'echo "store.sh: terminated, cleaning up" >&2; exit 143' TERM

need_kib=$(( (3 * DIGEST_MIB + 2048) * 1024 ))
wants digest || need_kib=$(( 2048 * 1024 ))
free_kib=$(df -Pk "$WORK" | awk 'NR==2 {print $4}')
[ "$free_kib" -ge "$need_kib" ] || die "not enough space in $TMPBASE: need $((need_kib / 1024)) MiB, have $((free_kib / 1024)) MiB (set STRATA_BENCH_TMPDIR)"

RESULTS=$WORK/results.tsv   # key <TAB> median seconds
WARNINGS=$WORK/warnings.txt # repeated under the results
: >"$RESULTS"
: >"$WARNINGS"
warn() {
    printf '\nWARNING: %s\n' "$*" >&2
    printf 'WARNING: %s\n' "$*" >>"$WARNINGS"
}

# Runs PREPARE then COMMAND once, outside hyperfine, so a failure shows its real error output
# (hyperfine only reports a non-zero exit code).
check_run() {
    local label=$1 prepare=$2 command=$3 out
    if ! out=$(bash -c "$prepare" 2>&1); then
        die "preparing '$label' failed
    command: $prepare
$out"
    fi
    if ! out=$(bash -c "$command" 2>&1 </dev/null); then
        die "'$label' failed
    command: $command
$out"
    fi
}

# bench NAME JSON [LABEL PREPARE COMMAND]... — one hyperfine invocation over several commands.
bench() {
    local name=$1 json=$WORK/$1.json
    shift
    local args=() label prepare command
    while [ $# -gt 0 ]; do
        label=$1 prepare=$2 command=$3
        shift 3
        check_run "$label" "$prepare" "$command"
        args+=(--prepare "$prepare" --command-name "$label" "$command")
    done
    hyperfine --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$json" "${args[@]}" \
        || die "hyperfine failed in the '$name' benchmark (see above)"
    python3 - "$json" >>"$RESULTS" <<'EOF'
import json, statistics, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"{r['command']}\t{statistics.median(r['times'])!r}")
EOF
}

# make_oci_layout LAYER.tar OUTDIR REPO:TAG — an OCI image layout whose only layer is LAYER.tar
# (uncompressed, hard-linked into blobs/), with a minimal config and an index naming REPO:TAG.
make_oci_layout() {
    python3 - "$1" "$2" "$3" <<'EOF'
import hashlib, json, os, platform, sys
layer, out, name = sys.argv[1:4]
h = hashlib.sha256()
with open(layer, "rb") as f:
    while chunk := f.read(1 << 20):
        h.update(chunk)
size = os.path.getsize(layer)
arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
        "s390x": "s390x", "riscv64": "riscv64"}.get(platform.machine(), platform.machine())
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, d), "wb").write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
layer_digest = "sha256:" + h.hexdigest()
os.link(layer, os.path.join(blobs, h.hexdigest()))
config = blob(json.dumps({
    "created": "2024-01-01T00:00:00Z", "architecture": arch, "os": "linux", "config": {},
    "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "strata bench/store.sh"}],
}).encode())
manifest = blob(json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": size}],
}).encode())
repo, tag = name.rsplit(":", 1)
json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
    "annotations": {"io.containerd.image.name": f"docker.io/{repo}:{tag}", "org.opencontainers.image.ref.name": tag},
}]}, open(os.path.join(out, "index.json"), "w"))
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
EOF
}

S=$(q "$STRATA")
W=$(q "$WORK")

echo "strata benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
note "strata:  $STRATA ($("$STRATA" --version 2>/dev/null))"
note "scratch: $WORK"
note "runs:    $RUNS (+$WARMUP warmup) per command; benchmarks: $ONLY"

# ---------------------------------------------------------------------------------------------
# Inputs: rootfs.tar (the layer), debian.tar (docker save of `docker import rootfs.tar`)
# ---------------------------------------------------------------------------------------------
if wants load || wants save || wants apply; then
    say "Preparing inputs from $ROOTFS"
    tar --numeric-owner --sort=name -C "$ROOTFS" -cf "$WORK/rootfs.tar" .
    note "rootfs.tar: $(du -m "$WORK/rootfs.tar" | cut -f1) MiB (uncompressed, one layer)"
fi
if wants load || wants save; then
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        die "docker already has an image named $IMAGE; remove it ('docker rmi $IMAGE') before benchmarking"
    fi
    DOCKER_IMAGE_OURS=1
    docker import "$WORK/rootfs.tar" "$IMAGE" >/dev/null
    docker save -o "$WORK/debian.tar" "$IMAGE"
    note "debian.tar: $(du -m "$WORK/debian.tar" | cut -f1) MiB (docker save of docker import)"
fi

# ---------------------------------------------------------------------------------------------
# 1. load
# ---------------------------------------------------------------------------------------------
if wants load; then
    say "1. load: debian.tar into an empty store"
    bench load \
        "strata load" "rm -rf $W/load-store" "$S --root $W/load-store load -q -i $W/debian.tar" \
        "docker load" "docker rmi -f $IMAGE >/dev/null 2>&1 || true" "docker load -q -i $W/debian.tar" \
        "skopeo copy docker-archive: -> oci:" "rm -rf $W/load-oci" \
        "skopeo copy -q --dest-oci-accept-uncompressed-layers docker-archive:$W/debian.tar oci:$W/load-oci:12"
fi

# ---------------------------------------------------------------------------------------------
# 2. save
# ---------------------------------------------------------------------------------------------
if wants save; then
    say "2. save: deb:12 to a docker-load-able tar"
    "$STRATA" --root "$WORK/save-store" load -q -i "$WORK/debian.tar" \
        || die "seeding the save store failed: $STRATA --root $WORK/save-store load -q -i $WORK/debian.tar"
    [ -f "$WORK/save-store/$LAYOUT_REL/index.json" ] \
        || die "strata's OCI layout $WORK/save-store/$LAYOUT_REL is missing after 'strata load' (found: $(cd "$WORK/save-store" && find repositories -maxdepth 4 2>/dev/null | tr '\n' ' '))"
    docker image inspect "$IMAGE" >/dev/null 2>&1 || docker load -q -i "$WORK/debian.tar" >/dev/null
    # skopeo reads strata's per-repository OCI layout. If it cannot, that is a strata interop
    # problem worth reporting, not a reason to lose the peer figure: say so loudly and time
    # skopeo on its own OCI layout of the same image instead.
    skopeo_src="oci:$WORK/save-store/$LAYOUT_REL:12"
    if ! err=$(skopeo inspect --raw "$skopeo_src" 2>&1 >/dev/null); then
        warn "skopeo cannot read strata's OCI layout: skopeo inspect --raw $skopeo_src: $err" \
             "(the 'save / skopeo' row reads skopeo's own OCI layout of debian.tar instead)"
        skopeo copy -q --dest-oci-accept-uncompressed-layers "docker-archive:$WORK/debian.tar" "oci:$WORK/skopeo-layout:12"
        skopeo_src="oci:$WORK/skopeo-layout:12"
    fi
    bench save \
        "strata save" "rm -f $W/save-out.tar" "$S --root $W/save-store save -o $W/save-out.tar $IMAGE" \
        "docker save" "rm -f $W/save-out.tar" "docker save -o $W/save-out.tar $IMAGE" \
        "skopeo copy oci: -> docker-archive:" "rm -f $W/save-out.tar" \
        "skopeo copy -q $(q "$skopeo_src") docker-archive:$W/save-out.tar:$IMAGE"
fi

# ---------------------------------------------------------------------------------------------
# 3. digest throughput
# ---------------------------------------------------------------------------------------------
LAYER_BYTES=0
DIGEST_WHERE=""
if wants digest; then
    say "3. digest: strata load of an OCI archive with one ${DIGEST_MIB} MiB uncompressed random layer"
    mkdir -p "$WORK/digest/payload"
    head -c "$((DIGEST_MIB * 1024 * 1024))" /dev/urandom >"$WORK/digest/payload/random.bin"
    tar -C "$WORK/digest/payload" -cf "$WORK/digest/layer.tar" random.bin
    rm -rf "$WORK/digest/payload"
    make_oci_layout "$WORK/digest/layer.tar" "$WORK/digest/layout" "$DIGEST_IMAGE"
    tar -C "$WORK/digest/layout" -cf "$WORK/digest/oci.tar" .
    rm -rf "$WORK/digest/layout"   # only a hard link to layer.tar was in it
    LAYER_BYTES=$(stat -c %s "$WORK/digest/layer.tar")
    note "layer.tar: $LAYER_BYTES bytes; oci.tar: $(stat -c %s "$WORK/digest/oci.tar") bytes"

    DSTORE_PARENT=$WORK/digest
    DIGEST_WHERE="disk"
    if [ "$DIGEST_ON_TMPFS" = 1 ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
        shm_free_kib=$(df -Pk /dev/shm | awk 'NR==2 {print $4}')
        if [ "$shm_free_kib" -ge $(( (3 * DIGEST_MIB + 256) * 1024 )) ]; then
            SHM=$(mktemp -d /dev/shm/strata-bench.XXXXXX)
            DSTORE_PARENT=$SHM
            DIGEST_WHERE="tmpfs"
        fi
    fi
    note "store for the digest benchmark: $DSTORE_PARENT ($DIGEST_WHERE)"
    D=$(q "$DSTORE_PARENT")
    L=$(q "$WORK/digest/layer.tar")
    digest_args=(
        "strata load (digest)" "rm -rf $D/store" "$S --root $D/store load -q -i $W/digest/oci.tar"
        "strata digest only" "true" "$S debug digest $L >/dev/null"
        "sha256sum" "true" "sha256sum $L >/dev/null"
    )
    if [ "$HAVE_OPENSSL" = 1 ]; then
        digest_args+=("openssl dgst -sha256" "true" "openssl dgst -sha256 $L >/dev/null")
    fi
    digest_args+=("dd copy + fsync" "rm -f $D/copy" "dd if=$W/digest/oci.tar of=$D/copy bs=1M conv=fsync status=none")
    bench digest "${digest_args[@]}"
    rm -rf "$DSTORE_PARENT/store" "$DSTORE_PARENT/copy"
fi

# ---------------------------------------------------------------------------------------------
# 4. apply
# ---------------------------------------------------------------------------------------------
# bench_apply: strata has no public apply command yet. This calls the hidden debug subcommand
# `strata debug apply-layer LAYER.tar DIR` (apply an uncompressed layer tar onto DIR) and skips
# strata when it is not there; the peers are still measured so their baseline is on record.
APPLY_STATUS=""
bench_apply() {
    say "4. apply: rootfs.tar (one uncompressed layer) onto an empty directory"
    local args=()
    if "$STRATA" debug apply-layer --help >/dev/null 2>&1; then
        args+=("strata apply" "rm -rf $W/apply-dir && mkdir $W/apply-dir"
               "$S debug apply-layer $W/rootfs.tar $W/apply-dir")
    else
        APPLY_STATUS="apply: skipped (strata debug apply-layer not available)"
        echo "$APPLY_STATUS"
    fi
    args+=("tar -xf" "rm -rf $W/apply-dir && mkdir $W/apply-dir" "tar -xf $W/rootfs.tar -C $W/apply-dir")
    if [ "$HAVE_UMOCI" = 1 ]; then
        make_oci_layout "$WORK/rootfs.tar" "$WORK/umoci-layout" "$IMAGE"
        if [ -f "$WORK/umoci-layout/index.json" ]; then
            args+=("umoci raw unpack" "rm -rf $W/apply-dir" "umoci raw unpack --image $W/umoci-layout:12 $W/apply-dir")
        fi
    fi
    bench apply "${args[@]}"
    rm -rf "$WORK/apply-dir"
}
wants apply && bench_apply

# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
SHA_NI=no
grep -qw sha_ni /proc/cpuinfo 2>/dev/null && SHA_NI=yes
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
summary=$(RESULTS="$RESULTS" LAYER_BYTES="$LAYER_BYTES" SHA_NI="$SHA_NI" CPU="${CPU:-unknown}" \
    NPROC="$(nproc)" RUNS="$RUNS" DIGEST_WHERE="$DIGEST_WHERE" APPLY_STATUS="$APPLY_STATUS" \
    KERNEL="$(uname -r)" python3 - <<'EOF'
import os
res = {}
for line in open(os.environ["RESULTS"]):
    key, value = line.rstrip("\n").split("\t")
    res[key] = float(value)
rows = [
    ("load", "strata load", "docker load", "docker load"),
    ("load", "strata load", "skopeo copy docker-archive: -> oci:", "skopeo copy -> oci:"),
    ("save", "strata save", "docker save", "docker save"),
    ("save", "strata save", "skopeo copy oci: -> docker-archive:", "skopeo copy -> docker-archive:"),
    ("digest", "strata digest only", "sha256sum", "sha256sum"),
    ("digest", "strata digest only", "openssl dgst -sha256", "openssl dgst -sha256"),
    ("digest", "strata load (digest)", "sha256sum", "sha256sum"),
    ("digest", "strata load (digest)", "openssl dgst -sha256", "openssl dgst -sha256"),
    ("digest", "strata load (digest)", "dd copy + fsync", "dd copy + fsync (I/O floor)"),
    ("apply", "strata apply", "tar -xf", "GNU tar -xf"),
    ("apply", "strata apply", "umoci raw unpack", "umoci raw unpack"),
]
fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
out = []
out.append(f"CPU: {os.environ['CPU']} ({os.environ['NPROC']} cores), SHA-NI: {os.environ['SHA_NI']}, "
           f"kernel {os.environ['KERNEL']}; medians of {os.environ['RUNS']} runs")
out.append("")
header = ("operation", "peer", "strata (s)", "peer (s)", "strata/peer")
table = []
for op, skey, pkey, plabel in rows:
    if pkey not in res:
        continue
    s, p = res.get(skey), res[pkey]
    table.append((op, plabel, fmt(s), fmt(p), "n/a" if s is None else f"{s / p:.2f}"))
widths = [max(len(r[i]) for r in [header] + table) for i in range(5)]
line = lambda r: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
out.append(line(header))
out.append("  ".join("-" * w for w in widths))
out.extend(line(r) for r in table)
if os.environ["APPLY_STATUS"]:
    out.append(os.environ["APPLY_STATUS"])
n = int(os.environ["LAYER_BYTES"])
if n:
    out.append("")
    out.append(f"digest throughput over the {n / 2**20:.0f} MiB layer (GB/s = 10^9 bytes / median seconds):")
    for key, label in [("strata digest only", "strata digest (strata debug digest)"),
                       ("strata load (digest)", f"strata load (store on {os.environ['DIGEST_WHERE']})"),
                       ("sha256sum", "sha256sum"), ("openssl dgst -sha256", "openssl dgst -sha256"),
                       ("dd copy + fsync", "dd copy + fsync (no hashing)")]:
        if key in res:
            out.append(f"  {label:<34} {n / res[key] / 1e9:6.2f} GB/s")
print("\n".join(out))
EOF
)
if [ -s "$WARNINGS" ]; then
    summary="$summary
$(cat "$WARNINGS")"
fi
say "Results (ratio < 1: strata is faster)"
echo "$summary"
if [ -n "$REPORT" ]; then
    { echo "strata benchmark — $(date -u '+%Y-%m-%d %H:%M UTC') — bench/store.sh --runs $RUNS --digest-mib $DIGEST_MIB"
      echo "$summary"; } >"$REPORT"
    echo "(summary written to $REPORT)"
fi
