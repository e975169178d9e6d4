#!/usr/bin/env bash
# bench/compat.sh — builds every Dockerfile of the corpus (tests/dockerfiles/NN-name/) with
# `strata build` and with BuildKit (`DOCKER_BUILDKIT=1 docker build`) from the same context and
# the same base image, then compares what they made:
#   - image config: Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels,
#     Healthcheck, StopSignal, Shell, OnBuild, author, and the history entries the Dockerfile
#     added (created_by, empty_layer);
#   - file trees: every path's type, mode, uid/gid, size, content sha256, link target
#     (timestamps aside), from `docker save` and `strata save` with the layers applied in order.
# It prints every difference and a summary line. It reports; it never fails on a difference
# (exit 1 only when it cannot run). See tests/dockerfiles/README.md for the corpus.
#
#   bench/compat.sh [--only SUBSTRING] [--no-build] [--keep] [--dump DIR]
#
# --dump DIR writes DIR/NN-name.json per compared directory: both tools' config, added history
# and the paths the build added or changed (with the text of small files), for writing
# expect.json files from what BuildKit does.
#
# Environment: STRATA (strata binary; skips the build), DOCKER (a docker client whose `build`
# speaks BuildKit without buildx; default /usr/bin/docker when present), STRATA_TEST_ROOTFS
# (Debian rootfs for directories whose expect.json says "base": "debian"; default
# /var/cache/strata-test/bookworm-rootfs), STRATA_BENCH_TMPDIR (scratch location).
set -euo pipefail

ONLY=""
BUILD=1
KEEP=0
DUMP=""
while [ $# -gt 0 ]; do
    case "$1" in
        --only) ONLY=${2:?--only needs a substring}; shift ;;
        --only=*) ONLY=${1#*=} ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        --dump) DUMP=${2:?--dump needs a directory}; shift ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "compat.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
die() { printf 'compat.sh: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: strata's RUN sandbox and docker need it"
command -v python3 >/dev/null || die "python3 is required"
[ -x /bin/busybox ] || die "/bin/busybox (busybox-static) is required: apt-get install busybox-static"
if [ -z "${DOCKER:-}" ]; then
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=$(command -v docker || true); fi
fi
[ -n "$DOCKER" ] || die "docker is required"
"$DOCKER" info >/dev/null 2>&1 || die "the Docker daemon is not reachable ('$DOCKER info' fails); start dockerd"
if [ -z "${STRATA:-}" ]; then
    STRATA=$REPO_ROOT/target/release/strata
    if [ "$BUILD" = 1 ]; then
        (cd "$REPO_ROOT" && cargo build --release -q -p strata-cli) || die "cargo build --release -p strata-cli failed"
    fi
fi
[ -x "$STRATA" ] || die "$STRATA not found; build it or set STRATA"

WORK=$(mktemp -d "${STRATA_BENCH_TMPDIR:-${TMPDIR:-/var/tmp}}/strata-compat.XXXXXX")
cleanup() {
    local rc=$?
    "$DOCKER" images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -E '^(strata-compat|corpus)/' \
        | xargs -r "$DOCKER" rmi -f >/dev/null 2>&1 || true
    if [ "$KEEP" = 1 ]; then echo "compat.sh: kept $WORK" >&2; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -z "$DUMP" ] || { mkdir -p "$DUMP" && DUMP=$(cd "$DUMP" && pwd); }
WORK="$WORK" DUMP="$DUMP" STRATA="$STRATA" DOCKER="$DOCKER" ONLY="$ONLY" \
    CORPUS="$REPO_ROOT/tests/dockerfiles" \
    DEBIAN_ROOTFS="${STRATA_TEST_ROOTFS:-/var/cache/strata-test/bookworm-rootfs}" \
    python3 - <<'EOF'
import hashlib, http.server, io, json, os, shutil, socket, subprocess, sys, tarfile, threading

WORK, STRATA, DOCKER = os.environ["WORK"], os.environ["STRATA"], os.environ["DOCKER"]
CORPUS, ONLY = os.environ["CORPUS"], os.environ["ONLY"]
STORE = os.path.join(WORK, "store")
CONFIG_FIELDS = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
                 "Labels", "Healthcheck", "StopSignal", "Shell", "OnBuild"]
BB = "strata-compat/bb:latest"
DEB = "strata-compat/deb:latest"
# What test Dockerfiles call the busybox image when they name it directly (COPY --from=IMAGE).
BB_ALIAS = "localhost:5000/strata-test/busybox:latest"

def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

def strata(*args):
    return run([STRATA, "--root", STORE, *args])

def must(p, what):
    if p.returncode != 0:
        sys.exit(f"compat.sh: {what} failed:\n{p.stderr[-3000:]}")
    return p.stdout

def busybox_tar(path):
    """The busybox-static rootfs the corpus test imports (crates/cli/tests/build_corpus.rs)."""
    applets = must(run(["/bin/busybox", "--list"]), "busybox --list").split()
    with tarfile.open(path, "w") as t:
        def add_dir(name):
            i = tarfile.TarInfo(name); i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
        def add_file(name, data, mode=0o644):
            i = tarfile.TarInfo(name); i.size = len(data); i.mode = mode; t.addfile(i, io.BytesIO(data))
        for d in ("bin", "etc", "tmp"):
            add_dir(d)
        with open("/bin/busybox", "rb") as f:
            add_file("bin/busybox", f.read(), 0o755)
        for a in applets:
            if a != "busybox":
                i = tarfile.TarInfo(f"bin/{a}"); i.type = tarfile.SYMTYPE; i.linkname = "busybox"; i.mode = 0o777
                t.addfile(i)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
                 b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        add_file("etc/group", b"root:x:0:\napp:x:1000:\nstaff:x:50:\nnogroup:x:65534:\n")

def import_both(tar, name):
    must(run([DOCKER, "import", tar, name]), f"docker import {name}")
    must(strata("import", tar, name), f"strata import {name}")

bb_tar = os.path.join(WORK, "busybox.tar")
busybox_tar(bb_tar)
import_both(bb_tar, BB)
must(run([DOCKER, "tag", BB, BB_ALIAS]), "docker tag")
must(strata("tag", BB, BB_ALIAS), "strata tag")
debian_ready = False

def ensure_debian():
    global debian_ready
    if debian_ready:
        return True
    root = os.environ["DEBIAN_ROOTFS"]
    if not os.path.isfile(os.path.join(root, "etc/debian_version")):
        return False
    tar = os.path.join(WORK, "debian.tar")
    must(run(["tar", "--numeric-owner", "-C", root, "-cf", tar, "."]), "tar of the Debian rootfs")
    import_both(tar, DEB)
    os.remove(tar)
    debian_ready = True
    return True

class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass

def serve(directory):
    handler = lambda *a, **k: Quiet(*a, directory=directory, **k)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"

def make_git_repo(bare, work):
    """A bare repository holding one commit (branch main) of the files in `work`, as
    crates/cli/tests/build_corpus.rs makes it."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}
    ident = ["-c", "user.name=strata-test", "-c", "user.email=test@example.invalid"]
    tree = ["--git-dir", bare, "--work-tree", work]
    for args in (["init", "-q", "--bare", "-b", "main", bare], tree + ["add", "-A"],
                 tree + ["commit", "-q", "-m", "corpus repository"],
                 ["--git-dir", bare, "update-server-info"]):
        must(run(["git", *ident, *args], env=env), f"git {args[0]}")

def norm(name):
    """A tar member name as an absolute, normalised path."""
    while name.startswith("./"):
        name = name[2:]
    name = os.path.normpath("/" + name)
    return "/" + name.lstrip("/")

def apply_layers(archive):
    """Path -> attributes of the filesystem an image archive (manifest.json style) describes."""
    tree = {}
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        config = json.load(outer.extractfile(manifest["Config"]))
        for layer in manifest["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer), mode="r:*") as t:
                for m in t:
                    path = norm(m.name)
                    d, base = os.path.split(path)
                    if base == ".wh..wh..opq":
                        for p in [p for p in tree if p.startswith(d.rstrip("/") + "/")]:
                            del tree[p]
                        continue
                    if base.startswith(".wh."):
                        gone = os.path.join(d, base[4:])
                        for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                            del tree[p]
                        continue
                    if not m.isdir() and tree.get(path, {}).get("type") == "dir":
                        for p in [p for p in tree if p.startswith(path + "/")]:
                            del tree[p]
                    attrs = {"mode": oct(m.mode & 0o7777), "uid": m.uid, "gid": m.gid}
                    if m.isdir():
                        attrs["type"] = "dir"
                    elif m.issym():
                        attrs.update(type="symlink", target=m.linkname)
                    elif m.islnk():
                        target = norm(m.linkname)
                        attrs = dict(tree.get(target, attrs))
                        attrs["hardlink"] = True
                    elif m.isfile():
                        data = t.extractfile(m).read()
                        attrs.update(type="file", size=len(data), sha256=hashlib.sha256(data).hexdigest()[:16])
                        if os.environ["DUMP"] and len(data) <= 4096:
                            try:
                                attrs["text"] = data.decode()
                            except UnicodeDecodeError:
                                pass
                    else:
                        attrs.update(type="dev" if m.ischr() or m.isblk() else "fifo",
                                     dev=f"{m.devmajor}:{m.devminor}")
                    tree[path] = attrs
    return config, tree

def history_added(config, base_config):
    h = config.get("history") or []
    n = len(base_config.get("history") or []) if base_config else 0
    return [(e.get("created_by", ""), bool(e.get("empty_layer", False))) for e in h[n:]]

def base_config_of(tool, name):
    if name is None:
        return None
    archive = os.path.join(WORK, f"base-{tool}.tar")
    if tool == "docker":
        must(run([DOCKER, "save", "-o", archive, name]), f"docker save {name}")
    else:
        must(strata("save", "-o", archive, name), f"strata save {name}")
    with tarfile.open(archive) as t:
        manifest = json.load(t.extractfile("manifest.json"))[0]
        cfg = json.load(t.extractfile(manifest["Config"]))
    os.remove(archive)
    return cfg

def compare(name, s_cfg, s_tree, d_cfg, d_tree, s_base, d_base):
    diffs = []
    sc, dc = s_cfg.get("config") or {}, d_cfg.get("config") or {}
    for f in CONFIG_FIELDS:
        sv, dv = sc.get(f), dc.get(f)
        if sv in ({}, []): sv = None
        if dv in ({}, []): dv = None
        if sv != dv:
            diffs.append(f"config {f}: strata {json.dumps(sv)} | docker {json.dumps(dv)}")
    if s_cfg.get("author") != d_cfg.get("author"):
        diffs.append(f"config author: strata {json.dumps(s_cfg.get('author'))} | docker {json.dumps(d_cfg.get('author'))}")
    sh, dh = history_added(s_cfg, s_base), history_added(d_cfg, d_base)
    for i in range(max(len(sh), len(dh))):
        a = sh[i] if i < len(sh) else None
        b = dh[i] if i < len(dh) else None
        if a != b:
            fmt = lambda e: "(none)" if e is None else f"{e[0]!r}{' [empty_layer]' if e[1] else ''}"
            diffs.append(f"history[{i}]: strata {fmt(a)} | docker {fmt(b)}")
    for p in sorted(set(s_tree) | set(d_tree)):
        a, b = s_tree.get(p), d_tree.get(p)
        if a == b:
            continue
        if a is None:
            diffs.append(f"file {p}: only in docker {b}")
        elif b is None:
            diffs.append(f"file {p}: only in strata {a}")
        else:
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            diffs.append(f"file {p}: " + ", ".join(f"{k} strata {a.get(k)} | docker {b.get(k)}" for k in keys))
    return diffs

base_trees = {}

def tree_of_image(tool, name):
    if name is None:
        return {}
    if (tool, name) not in base_trees:
        archive = os.path.join(WORK, f"base-tree-{tool}.tar")
        if tool == "docker":
            must(run([DOCKER, "save", "-o", archive, name]), f"docker save {name}")
        else:
            must(strata("save", "-o", archive, name), f"strata save {name}")
        base_trees[(tool, name)] = apply_layers(archive)[1]
        os.remove(archive)
    return base_trees[(tool, name)]

def dump(name, s_cfg, s_tree, d_cfg, d_tree, s_base, d_base, base_name, diffs):
    out = {"diffs": diffs}
    for tool, cfg, tree, base in (("strata", s_cfg, s_tree, s_base), ("docker", d_cfg, d_tree, d_base)):
        base_tree = tree_of_image(tool, base_name if tool == "strata" else
                                  (base_name.replace("corpus/", "strata-compat/").replace(":compat", ":latest")
                                   if base_name and base_name.startswith("corpus/") else base_name))
        added = {}
        for p, a in tree.items():
            if base_tree.get(p) != a:
                added[p] = dict(a)
        out[tool] = {"config": cfg.get("config") or {}, "author": cfg.get("author"),
                     "history": history_added(cfg, base), "added": added, "removed":
                     sorted(p for p in base_tree if p not in tree)}
    with open(os.path.join(os.environ["DUMP"], name + ".json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)

compared = identical = differing = skipped = ndiffs = 0
notes = []
built = {}  # corpus dir -> (strata name, docker name)
for name in sorted(os.listdir(CORPUS)):
    d = os.path.join(CORPUS, name)
    if not os.path.isdir(d) or (ONLY and ONLY not in name):
        continue
    try:
        expect = json.load(open(os.path.join(d, "expect.json")))
    except (OSError, ValueError) as e:
        expect = {}
    print(f"== {name}")
    if "error" in expect:
        print("   skipped: a negative case (the build must fail by design)")
        skipped += 1
        continue
    tmp = os.path.join(WORK, "tmp", name)
    os.makedirs(tmp, exist_ok=True)
    httpd = server = None
    if expect.get("serve") or expect.get("git_repos"):
        # One served directory: the `serve` subdirectory's files plus the bare repositories
        # of `git_repos` (dumb HTTP: the handler ignores git's ?service= query).
        served = os.path.join(tmp, "served")
        shutil.rmtree(served, ignore_errors=True)
        if expect.get("serve"):
            shutil.copytree(os.path.join(d, expect["serve"]), served)
        os.makedirs(served, exist_ok=True)
        for repo, sub in (expect.get("git_repos") or {}).items():
            make_git_repo(os.path.join(served, repo), os.path.join(d, sub))
        httpd, server = serve(served)
    def subst(s):
        s = s.replace("{dir}", d).replace("{tmp}", tmp)
        return s.replace("{server}", server) if server else s
    base_kind = expect.get("base", "busybox")
    if expect.get("base_image"):
        other = expect["base_image"]
        if other not in built:
            print(f"   skipped: its base image ({other}) was not built by both tools")
            skipped += 1
            continue
        s_base_name, d_base_name = built[other]
    elif base_kind == "debian":
        if not ensure_debian():
            print("   skipped: no Debian rootfs")
            skipped += 1
            continue
        s_base_name = d_base_name = DEB
    elif base_kind == "none":
        s_base_name = d_base_name = None
    else:
        s_base_name = d_base_name = BB
    common = []
    for k, v in (expect.get("build_args") or {}).items():
        common += ["--build-arg", f"{k}={subst(v)}"]
    common += [subst(f) for f in expect.get("flags") or []]
    s_tag, d_tag = f"corpus/{name}:compat", f"strata-compat/{name}:latest"
    s_args = ["build", "-q", "-t", s_tag] + common
    d_args = ["build", "-q", "-t", d_tag] + common
    if s_base_name:
        s_args += ["--build-arg", f"BASE={s_base_name}"]
        d_args += ["--build-arg", f"BASE={d_base_name}"]
    s = strata(*s_args, d)
    dk = run([DOCKER, *d_args, d], env={**os.environ, "DOCKER_BUILDKIT": "1"})
    if httpd:
        httpd.shutdown()
    if s.returncode != 0 or dk.returncode != 0:
        skipped += 1
        def last(text):
            """The line that says what went wrong: the last one mentioning an error."""
            lines = text.strip().splitlines() or ["?"]
            errors = [l for l in lines if "error" in l.lower()]
            return (errors or lines)[-1].strip()[:300]
        if s.returncode != 0 and dk.returncode == 0:
            print(f"   strata fails, docker builds: {last(s.stderr)}")
            notes.append(f"{name}: strata fails where docker builds: {last(s.stderr)}")
        elif s.returncode == 0:
            print(f"   docker fails, strata builds: {last(dk.stderr)}")
            notes.append(f"{name}: docker fails where strata builds: {last(dk.stderr)}")
        else:
            print(f"   both fail: strata: {last(s.stderr)} | docker: {last(dk.stderr)}")
        continue
    if expect.get("no_image"):
        print("   skipped: the build makes no image (--check/--output)")
        skipped += 1
        continue
    built[name] = (s_tag, d_tag)
    s_arch, d_arch = os.path.join(WORK, "s.tar"), os.path.join(WORK, "d.tar")
    must(strata("save", "-o", s_arch, s_tag), f"strata save {s_tag}")
    must(run([DOCKER, "save", "-o", d_arch, d_tag]), f"docker save {d_tag}")
    s_cfg, s_tree = apply_layers(s_arch)
    d_cfg, d_tree = apply_layers(d_arch)
    s_base, d_base = base_config_of("strata", s_base_name), base_config_of("docker", d_base_name)
    diffs = compare(name, s_cfg, s_tree, d_cfg, d_tree, s_base, d_base)
    if os.environ["DUMP"]:
        dump(name, s_cfg, s_tree, d_cfg, d_tree, s_base, d_base, s_base_name, diffs)
    compared += 1
    if diffs:
        differing += 1
        ndiffs += len(diffs)
        for line in diffs:
            print(f"   {line}")
    else:
        identical += 1
        print("   identical (config, history, file tree)")
print()
for n in notes:
    print(f"note: {n}")
print(f"compat: {compared} compared, {identical} identical, {differing} differ ({ndiffs} differences), "
      f"{skipped} not compared")
EOF
