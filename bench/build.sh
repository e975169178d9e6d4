#!/usr/bin/env bash
# bench/build.sh — `strata build` against BuildKit (`DOCKER_BUILDKIT=1 docker build`) and
# `buildah bud --layers` on the reference workload (shared/bench: a Debian base, three
# independent stages, a ~100 MB context of 20,001 files), all in one run. For each tool:
#   cold     build cache emptied and the built image removed; the base image stays pulled
#   warm     nothing changed since the last build (a no-op rebuild)
#   changed  one line appended to src/d000/f00000.txt before each build
# It prints medians, the ratios strata/BuildKit and strata/buildah against the acceptance
# targets (cold <= 0.6x, warm <= 0.3x, changed <= 0.5x BuildKit), and strata's peak memory
# against 1 GiB. It never fails because something is slow. See bench/README.md.
#
#   bench/build.sh [--runs N] [--quick] [--tools LIST] [--scenarios LIST] [--files N]
#                  [--no-build] [--report FILE] [--keep]
#
# Environment: STRATA (strata binary; skips the build), DOCKER (a docker client whose `build`
# speaks BuildKit without buildx; default /usr/bin/docker when present), STRATA_BENCH_WORKLOAD
# (the workload dir; default ../shared/bench next to the repo, or /work/shared/bench),
# STRATA_BENCH_TMPDIR (scratch location, default $TMPDIR or /var/tmp; needs ~2 GiB).
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------
RUNS=3
TOOLS="strata,docker,buildah"
SCENARIOS="cold,warm,changed"
FILES=20000
BUILD=1
REPORT=""
KEEP=0

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

Options:
  --runs N           timed runs per tool and scenario (default 3; hyperfine --runs N). Each
                     command also runs once untimed first (error check, page cache warm-up).
  --quick            --runs 2 (a smoke run)
  --tools LIST       comma-separated subset of: strata,docker,buildah (default: all)
  --scenarios LIST   comma-separated subset of: cold,warm,changed (default: all)
  --files N          files in the build context (default 20000, the reference workload)
  --no-build         do not run `cargo build --release -p strata-cli` first
  --report FILE      also write the final summary to FILE
  --keep             keep the scratch directory (context, stores, hyperfine JSON)
  -h, --help         this help
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) RUNS=2 ;;
        --runs) RUNS=${2:?--runs needs a number}; shift ;;
        --runs=*) RUNS=${1#*=} ;;
        --tools) TOOLS=${2:?--tools needs a list}; shift ;;
        --tools=*) TOOLS=${1#*=} ;;
        --scenarios) SCENARIOS=${2:?--scenarios needs a list}; shift ;;
        --scenarios=*) SCENARIOS=${1#*=} ;;
        --files) FILES=${2:?--files needs a number}; shift ;;
        --files=*) FILES=${1#*=} ;;
        --no-build) BUILD=0 ;;
        --report) REPORT=${2:?--report needs a file}; shift ;;
        --report=*) REPORT=${1#*=} ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

case "$RUNS" in ''|*[!0-9]*) echo "build.sh: --runs must be a positive integer" >&2; exit 2 ;; esac
case "$FILES" in ''|*[!0-9]*) echo "build.sh: --files must be a positive integer" >&2; exit 2 ;; esac
[ "$RUNS" -ge 1 ] || { echo "build.sh: --runs must be at least 1" >&2; exit 2; }
[ "$FILES" -ge 1 ] || { echo "build.sh: --files must be at least 1" >&2; exit 2; }
for t in ${TOOLS//,/ }; do
    case "$t" in strata|docker|buildah) ;; *) echo "build.sh: --tools: unknown tool '$t'" >&2; exit 2 ;; esac
done
for s in ${SCENARIOS//,/ }; do
    case "$s" in cold|warm|changed) ;; *) echo "build.sh: --scenarios: unknown scenario '$s'" >&2; exit 2 ;; esac
done
has_tool() { case ",$TOOLS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
has_scenario() { case ",$SCENARIOS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
TMPBASE=${STRATA_BENCH_TMPDIR:-${TMPDIR:-/var/tmp}}
BASE=127.0.0.1:5000/deb:local       # what the workload's Dockerfile builds FROM
IMAGE=strata-bench/build:1          # the tag every tool builds; removed again at exit
CHANGED_FILE=src/d000/f00000.txt    # the file the `changed` scenario appends to

say() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf '\nbuild.sh: error: %s\n' "$*" >&2; exit 1; }
q() { printf '%q' "$1"; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed ($2)"; }

if [ -n "${STRATA_BENCH_WORKLOAD:-}" ]; then
    WORKLOAD=$STRATA_BENCH_WORKLOAD
elif [ -x "$REPO_ROOT/../shared/bench/make-context.sh" ]; then
    WORKLOAD=$REPO_ROOT/../shared/bench
else
    WORKLOAD=/work/shared/bench
fi
[ -x "$WORKLOAD/make-context.sh" ] && [ -x "$WORKLOAD/setup-base.sh" ] \
    || die "the reference workload is not at $WORKLOAD (set STRATA_BENCH_WORKLOAD)"
WORKLOAD=$(cd "$WORKLOAD" && pwd)

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
need hyperfine "apt-get install hyperfine"
need python3 "apt-get install python3"
[ -x /usr/bin/time ] || die "/usr/bin/time is required (apt-get install time)"
[ "$(id -u)" = 0 ] || die "run as root: docker, buildah and strata's RUN sandbox need it"

DOCKERD_PID=""
if has_tool docker; then
    # Docker 25+ clients hand `docker build` to buildx; Debian's docker.io 20.10 client talks
    # BuildKit itself, so prefer it when both are installed.
    if [ -z "${DOCKER:-}" ]; then
        if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=$(command -v docker || true); fi
    fi
    [ -n "$DOCKER" ] && [ -x "$DOCKER" ] || die "docker is required (apt-get install docker.io) or leave it out with --tools"
    if ! "$DOCKER" info >/dev/null 2>&1; then
        need dockerd "apt-get install docker.io"
        say "Starting dockerd (docker info failed); it is stopped again at exit"
        dockerd >"$TMPBASE/strata-build-bench-dockerd.log" 2>&1 &
        DOCKERD_PID=$!
        for _ in $(seq 100); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.2; done
        "$DOCKER" info >/dev/null 2>&1 || die "dockerd did not come up (see $TMPBASE/strata-build-bench-dockerd.log)"
    fi
fi
if has_tool buildah && ! command -v buildah >/dev/null 2>&1; then
    say "Installing buildah (apt-get install buildah)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null; } \
        || die "installing buildah failed; install it or leave it out with --tools"
fi

# ---------------------------------------------------------------------------------------------
# strata binary
# ---------------------------------------------------------------------------------------------
if has_tool strata; then
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
fi

# ---------------------------------------------------------------------------------------------
# Scratch directory and cleanup
# ---------------------------------------------------------------------------------------------
mkdir -p "$TMPBASE"
WORK=$(mktemp -d "$TMPBASE/strata-build-bench.XXXXXX")
DOCKER_IMAGE_OURS=0
cleanup() {
    local rc=$?
    set +e
    if [ "$DOCKER_IMAGE_OURS" = 1 ]; then "$DOCKER" rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
    if [ -d "$WORK/buildah" ]; then
        buildah --root "$WORK/buildah/root" --runroot "$WORK/buildah/run" rm --all >/dev/null 2>&1 || true
        buildah --root "$WORK/buildah/root" --runroot "$WORK/buildah/run" rmi --all -f >/dev/null 2>&1 || true
        # containers/storage leaves its overlay mounts behind otherwise.
        { grep -F "$WORK/buildah" /proc/mounts || true; } | awk '{print $2}' | sort -r \
            | while read -r m; do umount "$m" 2>/dev/null || true; done
    fi
    if [ -n "$DOCKERD_PID" ]; then kill "$DOCKERD_PID" 2>/dev/null || true; wait "$DOCKERD_PID" 2>/dev/null || true; fi
    if [ "$KEEP" = 1 ]; then
        echo "build.sh: kept the scratch directory $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "build.sh: interrupted, cleaning up" >&2; exit 130' INT
trap 'echo "build.sh: terminated, cleaning up" >&2; exit 143' TERM

free_kib=$(df -Pk "$WORK" | awk 'NR==2 {print $4}')
[ "$free_kib" -ge $((2048 * 1024)) ] || die "not enough space in $TMPBASE: need 2048 MiB, have $((free_kib / 1024)) MiB (set STRATA_BENCH_TMPDIR)"

RESULTS=$WORK/results.tsv   # scenario/tool <TAB> median <TAB> min <TAB> max (seconds)
MEMORY=$WORK/memory.tsv     # scenario <TAB> max RSS KiB (/usr/bin/time) <TAB> tree peak KiB
WARNINGS=$WORK/warnings.txt
: >"$RESULTS"; : >"$MEMORY"; : >"$WARNINGS"
warn() { printf '\nWARNING: %s\n' "$*" >&2; printf 'WARNING: %s\n' "$*" >>"$WARNINGS"; }

W=$(q "$WORK")
CTX=$WORK/ctx
C=$(q "$CTX")

echo "strata build benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
[ -n "${STRATA:-}" ] && note "strata:   $STRATA ($("$STRATA" --version 2>/dev/null))"
has_tool docker && note "docker:   $DOCKER (client $("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null), daemon $("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null))"
has_tool buildah && note "buildah:  $(buildah --version 2>/dev/null)"
note "workload: $WORKLOAD; scratch: $WORK"
note "runs:     $RUNS timed (+1 untimed) per tool and scenario; tools: $TOOLS; scenarios: $SCENARIOS"

# ---------------------------------------------------------------------------------------------
# Inputs: the base image in the registry, the context, each tool's base image pulled
# ---------------------------------------------------------------------------------------------
say "Preparing the base image ($WORKLOAD/setup-base.sh) and the context ($FILES files)"
"$WORKLOAD/setup-base.sh" >"$WORK/setup-base.log" 2>&1 \
    || die "setup-base.sh failed:
$(tail -n 20 "$WORK/setup-base.log")"
"$WORKLOAD/make-context.sh" "$CTX" "$FILES" || die "make-context.sh failed"
cp "$CTX/$CHANGED_FILE" "$WORK/changed-file.orig"
note "context: $(du -sm "$CTX" | cut -f1) MiB, $(find "$CTX" -type f | wc -l) files"

# The `changed` scenario appends to this file; cold and warm start from the original content.
RESTORE="cp $W/changed-file.orig $C/$CHANGED_FILE"
CHANGE="echo \"changed \$(date +%s%N)\" >>$C/$CHANGED_FILE"

if has_tool strata; then
    S=$(q "$STRATA")
    SROOT=$WORK/strata-store
    SR=$(q "$SROOT")
    "$STRATA" --root "$SROOT" pull -q "$BASE" >"$WORK/strata-pull.log" 2>&1 \
        || die "strata pull $BASE failed:
$(cat "$WORK/strata-pull.log")"
    STRATA_BUILD="$S --root $SR build -q -t $IMAGE $C >/dev/null"
    if "$STRATA" builder prune --help >/dev/null 2>&1; then
        STRATA_COLD="$RESTORE && { $S --root $SR rmi -f $IMAGE >/dev/null 2>&1 || true; } && $S --root $SR builder prune -f >/dev/null"
    else
        # An older strata without `builder prune`: start each cold build from a copy of a store
        # that holds only the pulled base image (so its first unpack is part of the cold time).
        warn "this strata has no 'builder prune': cold strata builds start from a fresh store with only the base pulled (they include unpacking the base layer)"
        cp -a "$SROOT" "$WORK/strata-store-base"
        STRATA_COLD="$RESTORE && rm -rf $SR && cp -a $W/strata-store-base $SR"
    fi
fi
if has_tool docker; then
    if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
        die "docker already has an image named $IMAGE; remove it ('docker rmi $IMAGE') before benchmarking"
    fi
    DOCKER_IMAGE_OURS=1
    "$DOCKER" pull -q "$BASE" >/dev/null || die "docker pull $BASE failed"
    D=$(q "$DOCKER")
    DOCKER_BUILD="DOCKER_BUILDKIT=1 $D build -q -t $IMAGE $C >/dev/null"
    # The builder cache is the daemon's: this empties it for every user of this dockerd.
    DOCKER_COLD="$RESTORE && { $D rmi -f $IMAGE >/dev/null 2>&1 || true; } && $D builder prune -af >/dev/null"
fi
if has_tool buildah; then
    # A private containers/storage root: pruning it touches nobody else's images.
    mkdir -p "$WORK/buildah"
    B="buildah --root $W/buildah/root --runroot $W/buildah/run --storage-driver overlay"
    $B pull -q --tls-verify=false "$BASE" >"$WORK/buildah-pull.log" 2>&1 \
        || die "buildah pull $BASE failed:
$(cat "$WORK/buildah-pull.log")"
    BUILDAH_BUILD="$B bud --layers -q --tls-verify=false -t $IMAGE $C >/dev/null"
    BUILDAH_COLD="$RESTORE && { $B rmi -f $IMAGE >/dev/null 2>&1 || true; } && $B rmi --prune >/dev/null 2>&1; true"
fi

# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------
# The peak resident set of the whole strata process tree (the builder, the re-executed builder
# in its mount namespace, sandboxes, RUN commands), sampled from /proc every 20 ms.
tree_peak() {
    python3 - "$@" <<'EOF'
import os, subprocess, sys, time
proc = subprocess.Popen(["bash", "-c", sys.argv[1]])
page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
peak = 0
def tree_rss(root):
    children, rss = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(name))
            with open(f"/proc/{name}/statm") as f:
                rss[int(name)] = int(f.read().split()[1]) * page_kib
        except (OSError, IndexError, ValueError):
            pass
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total
while proc.poll() is None:
    peak = max(peak, tree_rss(proc.pid))
    time.sleep(0.02)
print(peak)
sys.exit(proc.returncode)
EOF
}

# Runs PREPARE then COMMAND once, outside hyperfine, so a failure shows its real error output
# (hyperfine only reports a non-zero exit code). It doubles as the untimed first run.
check_run() {
    local label=$1 prepare=$2 command=$3 out
    out=$(bash -c "$prepare" 2>&1) || die "preparing '$label' failed
    command: $prepare
$out"
    out=$(bash -c "${command% >/dev/null}" 2>&1 </dev/null) || die "'$label' failed
    command: ${command% >/dev/null}
$out"
}

# bench SCENARIO [TOOL PREPARE COMMAND]... — one hyperfine invocation over the tools.
bench() {
    local scenario=$1 json=$WORK/$1.json
    shift
    local args=() tool prepare command peak
    while [ $# -gt 0 ]; do
        tool=$1 prepare=$2 command=$3
        shift 3
        if [ "$tool" = strata ]; then
            # The untimed run of strata is the one whose process-tree memory is sampled.
            bash -c "$prepare" >/dev/null 2>&1 || die "preparing '$scenario/strata' failed: $prepare"
            if ! peak=$(tree_peak "${command% >/dev/null} >$W/strata-check.log 2>&1"); then
                die "'$scenario/strata' failed
    command: ${command% >/dev/null}
$(tail -n 30 "$WORK/strata-check.log")"
            fi
            printf '%s\ttree\t%s\n' "$scenario" "$peak" >>"$MEMORY"
            command="/usr/bin/time -a -o $W/rss-$scenario.txt -f %M $command"
        else
            check_run "$scenario/$tool" "$prepare" "$command"
        fi
        args+=(--prepare "$prepare" --command-name "$scenario/$tool" "$command")
    done
    hyperfine --style basic --warmup 0 --runs "$RUNS" --export-json "$json" "${args[@]}" \
        || die "hyperfine failed in the '$scenario' benchmark (see above)"
    python3 - "$json" >>"$RESULTS" <<'EOF'
import json, statistics, sys
for r in json.load(open(sys.argv[1]))["results"]:
    t = r["times"]
    print(f"{r['command']}\t{statistics.median(t)!r}\t{min(t)!r}\t{max(t)!r}")
EOF
    if [ -f "$WORK/rss-$scenario.txt" ]; then
        printf '%s\ttime\t%s\n' "$scenario" "$(sort -n "$WORK/rss-$scenario.txt" | tail -n1)" >>"$MEMORY"
    fi
}

scenario_args() {
    local scenario=$1 args=()
    local prep_strata prep_docker prep_buildah
    case "$scenario" in
        cold) prep_strata=${STRATA_COLD:-}; prep_docker=${DOCKER_COLD:-}; prep_buildah=${BUILDAH_COLD:-} ;;
        warm) prep_strata=true; prep_docker=true; prep_buildah=true ;;
        changed) prep_strata=$CHANGE; prep_docker=$CHANGE; prep_buildah=$CHANGE ;;
    esac
    has_tool strata && args+=(strata "$prep_strata" "$STRATA_BUILD")
    has_tool docker && args+=(docker "$prep_docker" "$DOCKER_BUILD")
    has_tool buildah && args+=(buildah "$prep_buildah" "$BUILDAH_BUILD")
    bench "$scenario" "${args[@]}"
}

# Warm and changed need a built image in each tool: when cold is skipped, build once first.
if ! has_scenario cold; then
    say "Building once with each tool (cold is not measured)"
    has_tool strata && check_run "initial/strata" "$RESTORE" "$STRATA_BUILD"
    has_tool docker && check_run "initial/docker" "$RESTORE" "$DOCKER_BUILD"
    has_tool buildah && check_run "initial/buildah" "$RESTORE" "$BUILDAH_BUILD"
fi
has_scenario cold && { say "cold: build cache emptied, base image pulled"; scenario_args cold; }
# Cold and the initial builds leave the context as make-context.sh made it; warm touches nothing.
has_scenario warm && { say "warm: nothing changed"; scenario_args warm; }
has_scenario changed && { say "changed: one line appended to $CHANGED_FILE before each build"; scenario_args changed; }

# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
summary=$(RESULTS="$RESULTS" MEMORY="$MEMORY" RUNS="$RUNS" CPU="${CPU:-unknown}" NPROC="$(nproc)" \
    KERNEL="$(uname -r)" FILES="$FILES" python3 - <<'EOF'
import os
res, mem = {}, {}
for line in open(os.environ["RESULTS"]):
    key, med, lo, hi = line.rstrip("\n").split("\t")
    res[key] = (float(med), float(lo), float(hi))
for line in open(os.environ["MEMORY"]):
    scenario, kind, kib = line.rstrip("\n").split("\t")
    mem[(scenario, kind)] = int(kib)
scenarios = [("cold", "cold", 0.6), ("warm", "warm no-op", 0.3), ("changed", "one file changed", 0.5)]
fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
ratio = lambda a, b: "n/a" if a is None or b is None else f"{a / b:.2f}"
get = lambda s, t: res.get(f"{s}/{t}", (None,))[0]
out = [f"CPU: {os.environ['CPU']} ({os.environ['NPROC']} cores), kernel {os.environ['KERNEL']}; "
       f"context {os.environ['FILES']} files; medians of {os.environ['RUNS']} runs (s)", ""]
header = ("scenario", "strata", "BuildKit", "buildah", "strata/BuildKit", "target", "met",
          "strata/buildah")
rows = []
for key, label, target in scenarios:
    if not any(k.startswith(key + "/") for k in res):
        continue
    s, d, b = get(key, "strata"), get(key, "docker"), get(key, "buildah")
    met = "n/a" if s is None or d is None else ("yes" if s / d <= target else "NO")
    rows.append((label, fmt(s), fmt(d), fmt(b), ratio(s, d), f"<= {target}", met, ratio(s, b)))
widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
out.append(line(header))
out.append("  ".join("-" * w for w in widths))
out.extend(line(r) for r in rows)
spread = []
for key, label, _ in scenarios:
    for tool in ("strata", "docker", "buildah"):
        if f"{key}/{tool}" in res:
            med, lo, hi = res[f"{key}/{tool}"]
            spread.append(f"{key}/{tool} {lo:.2f}-{hi:.2f}")
if spread:
    out += ["", "min-max: " + ", ".join(spread)]
if mem:
    out += ["", "strata peak memory (limit 1024 MiB):"]
    for key, label, _ in scenarios:
        t, tree = mem.get((key, "time")), mem.get((key, "tree"))
        if t is None and tree is None:
            continue
        mib = lambda k: "n/a" if k is None else f"{k / 1024:.0f} MiB"
        worst = max(v for v in (t, tree) if v is not None)
        out.append(f"  {label:<17} max RSS of one process (/usr/bin/time %M) {mib(t):>9}; "
                   f"whole process tree (sampled) {mib(tree):>9}  {'ok' if worst <= 1024 * 1024 else 'OVER'}")
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
    { echo "strata build benchmark — $(date -u '+%Y-%m-%d %H:%M UTC') — bench/build.sh --runs $RUNS --tools $TOOLS --scenarios $SCENARIOS"
      echo "$summary"; } >"$REPORT"
    echo "(summary written to $REPORT)"
fi
