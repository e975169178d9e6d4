//! The RUN sandbox. The builder re-executes the strata binary under util-linux `unshare` with new
//! mount, PID, IPC and UTS namespaces (`--kill-child`, so nothing outlives it); inside,
//! [`run_in_namespace`] mounts the overlay root filesystem, `/proc`, a minimal `/dev`,
//! `/etc/hosts` and `/etc/resolv.conf` and the step's `--mount`s, makes the overlay the root
//! (`pivot_root`, the host's root detached: unlike a chroot, nothing leads back to it), drops
//! the capabilities a container does not get, and runs the command. Every mount belongs to the
//! private mount namespace and disappears with it. Device nodes work only where the minimal
//! `/dev` binds them: every other filesystem of the step is mounted `nodev`.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::thread::CapabilitySet;
use serde::{Deserialize, Serialize};

use crate::mounts::{self, SandboxMount};

/// Hostname inside the sandbox, as BuildKit uses.
pub const HOSTNAME: &str = "buildkitsandbox";

/// Where a shebang heredoc script is placed, as BuildKit does (on the sandbox's `/dev`
/// tmpfs, never in a layer).
pub const SCRIPT_DIR: &str = "/dev/pipes";

/// Everything the sandbox needs, written as JSON by the builder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Overlay lower directories, top first.
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    pub argv: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Absolute working directory inside the root filesystem (created when missing).
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// Extra groups are not supported; the user's primary group only.
    pub hosts_file: PathBuf,
    pub resolv_file: PathBuf,
    /// Name and body of a `#!` heredoc, written to [`SCRIPT_DIR`]`/<name>`.
    pub script: Option<(String, String)>,
    /// Where to record the mount points the sandbox had to create (removed from the layer).
    pub created_list: PathBuf,
    /// `RUN --mount`s, made over the root filesystem before it becomes the root.
    #[serde(default)]
    pub mounts: Vec<SandboxMount>,
    /// `(variable, secret index)`: secrets given to the command as environment variables.
    #[serde(default)]
    pub secret_env: Vec<(String, usize)>,
    /// An empty directory of the step's scratch space that gets a private tmpfs for secrets.
    #[serde(default)]
    pub secrets_dir: PathBuf,
    /// `--network=none`: the sandbox has its own network namespace, with only loopback (up).
    #[serde(default)]
    pub isolated_network: bool,
}

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Runs inside the new namespaces (as their PID 1); returns the command's exit code.
pub fn run_in_namespace(spec_path: &Path) -> Result<i32, String> {
    // Only ever as PID 1 of the namespaces `unshare` made: outside them, the mounts below
    // would change the host's mount table.
    if std::process::id() != 1 {
        return Err(
            "the sandbox runs only inside its own namespaces (started by `strata build`)".into(),
        );
    }
    let text = std::fs::read(spec_path).map_err(|e| err(spec_path.display(), e))?;
    let spec: SandboxSpec =
        serde_json::from_slice(&text).map_err(|e| err("reading the sandbox spec", e))?;
    // Secrets come on stdin (never on disk); the command itself gets no stdin.
    let secrets = mounts::read_payload(&mut std::io::stdin().lock())?;
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| err("making mounts private", e))?;
    let lowers: Vec<String> = spec
        .lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    for p in spec.lowers.iter().chain([&spec.upper, &spec.work]) {
        let s = p.display().to_string();
        if s.contains([':', ',']) {
            return Err(format!(
                "overlay directory {s} contains ':' or ',', which overlayfs cannot take"
            ));
        }
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}{}",
        lowers.join(":"),
        spec.upper.display(),
        spec.work.display(),
        overlay_xattr_option()
    );
    if data.len() >= 4000 {
        return Err(format!(
            "{} layers do not fit in one overlay mount's options; images this deep are not supported yet",
            spec.lowers.len()
        ));
    }
    let data = std::ffi::CString::new(data).map_err(|e| err("overlay options", e))?;
    // nodev: device nodes an image's layers carry (or a step makes) do not open.
    rustix::mount::mount(
        "overlay",
        &spec.merged,
        "overlay",
        MountFlags::NODEV,
        data.as_c_str(),
    )
    .map_err(|e| err("mounting the overlay root filesystem", e))?;
    let root = &spec.merged;
    let mut created = Vec::new();
    // Until the chroot, paths in the image are host paths: nothing here may follow a symlink
    // the image planted (a mount or a create through it would land on the host).
    let real_dir =
        |rel: &str| std::fs::symlink_metadata(root.join(rel)).is_ok_and(|m| m.file_type().is_dir());
    let ensure_dir = |rel: &str, created: &mut Vec<String>| -> Result<(), String> {
        let path = root.join(rel);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => Ok(()),
            Ok(_) => Err(format!(
                "/{rel} in the image is not a directory (symlinks there are not supported yet)"
            )),
            Err(_) => {
                std::fs::create_dir(&path).map_err(|e| err(path.display(), e))?;
                created.push(rel.to_string());
                Ok(())
            }
        }
    };
    ensure_dir("proc", &mut created)?;
    ensure_dir("dev", &mut created)?;
    if std::fs::symlink_metadata(root.join("etc")).is_err() {
        ensure_dir("etc", &mut created)?;
    }
    rustix::mount::mount(
        "proc",
        root.join("proc"),
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    )
    .map_err(|e| err("mounting /proc", e))?;
    let dev = root.join("dev");
    let mode = c"mode=755,size=65536k";
    // nodev too: only the host devices bound below (their own mounts) open.
    rustix::mount::mount(
        "tmpfs",
        &dev,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        mode,
    )
    .map_err(|e| err("mounting /dev", e))?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(name);
        std::fs::File::create(&target).map_err(|e| err(target.display(), e))?;
        rustix::mount::mount_bind(Path::new("/dev").join(name), &target)
            .map_err(|e| err(format!("binding /dev/{name}"), e))?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link)).map_err(|e| err(link, e))?;
    }
    std::fs::create_dir(dev.join("shm")).map_err(|e| err("/dev/shm", e))?;
    rustix::mount::mount(
        "shm",
        dev.join("shm"),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"mode=1777,size=65536k",
    )
    .map_err(|e| err("mounting /dev/shm", e))?;
    for (name, source) in [
        ("etc/hosts", &spec.hosts_file),
        ("etc/resolv.conf", &spec.resolv_file),
    ] {
        if !real_dir("etc") {
            // /etc is a symlink: leave the image's files alone.
            continue;
        }
        let target = root.join(name);
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_file() => {}
            // A symlink or something else: leave it alone.
            Ok(_) => continue,
            Err(_) => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(|e| err(target.display(), e))?;
                created.push(name.to_string());
            }
        }
        rustix::mount::mount_bind(source, &target)
            .map_err(|e| err(format!("binding /{name}"), e))?;
    }
    mounts::apply(
        root,
        &spec.mounts,
        &secrets,
        &spec.secrets_dir,
        &mut created,
    )?;
    if let Some((name, script)) = &spec.script {
        let dir = root.join(SCRIPT_DIR.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).map_err(|e| err(dir.display(), e))?;
        let path = dir.join(name);
        std::fs::write(&path, script).map_err(|e| err(path.display(), e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| err(path.display(), e))?;
    }
    std::fs::write(
        &spec.created_list,
        serde_json::to_vec(&created).map_err(|e| err("created list", e))?,
    )
    .map_err(|e| err(spec.created_list.display(), e))?;
    if spec.isolated_network {
        loopback_up().map_err(|e| err("bringing up the loopback interface", e))?;
    }
    rustix::system::sethostname(HOSTNAME.as_bytes()).map_err(|e| err("sethostname", e))?;
    // The overlay becomes the root and the host's root is detached, so no `..` and no chroot
    // trick of a root process leads back to the host (as runc does it: pivot_root(".", ".")).
    std::env::set_current_dir(root).map_err(|e| err(root.display(), e))?;
    rustix::process::pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
        .map_err(|e| err("detaching the host's root", e))?;
    std::env::set_current_dir("/").map_err(|e| err("chdir /", e))?;
    drop_capabilities()?;
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    // Inside the new root now: the working directory is created like runc does.
    if std::fs::metadata(cwd).is_err() {
        std::fs::create_dir_all(cwd).map_err(|e| err(format!("creating {cwd}"), e))?;
    }
    std::env::set_current_dir(cwd).map_err(|e| err(format!("chdir {}", spec.cwd), e))?;

    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| "empty command".to_string())?;
    let mut command = Command::new(program);
    command.args(args).env_clear();
    for entry in &spec.env {
        let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
        command.env(k, v);
    }
    for (name, index) in &spec.secret_env {
        let value = secrets
            .get(*index)
            .ok_or_else(|| format!("secret for ${name} missing from the payload"))?;
        if value.contains(&0) {
            return Err(format!(
                "the secret for ${name} contains a NUL byte, which an environment variable cannot hold"
            ));
        }
        command.env(name, std::ffi::OsStr::from_bytes(value));
    }
    // The command's stderr joins its stdout, so the builder sees one ordered stream.
    let stdout_fd = std::os::fd::AsFd::as_fd(&std::io::stdout())
        .try_clone_to_owned()
        .map_err(|e| err("duplicating stdout", e))?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::from(stdout_fd));
    if spec.uid != 0 || spec.gid != 0 {
        command.uid(spec.uid).gid(spec.gid);
    }
    let _ = std::io::stdout().flush();
    let status = command
        .status()
        .map_err(|e| err(format!("running {program}"), e))?;
    Ok(match status.code() {
        Some(code) => code,
        None => 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0),
    })
}

/// Whether this process runs in a user namespace other than the initial one (a rootless
/// build): its uid map is not the identity over all ids.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|map| {
        let fields: Vec<&str> = map.split_whitespace().collect();
        fields != ["0", "0", "4294967295"]
    })
}

/// `,userxattr` in a user namespace, where overlayfs cannot use `trusted.*` xattrs and keeps
/// its metadata (opaque directories, redirects) in `user.overlay.*` instead.
pub fn overlay_xattr_option() -> &'static str {
    if in_user_namespace() {
        ",userxattr"
    } else {
        ""
    }
}

/// The capabilities a step keeps: Docker's (and BuildKit's) default set for containers. Without
/// the others (`CAP_SYS_ADMIN` above all) a step cannot mount, unmount or change its namespaces.
const KEPT_CAPABILITIES: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::MKNOD)
    .union(CapabilitySet::NET_RAW)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::SETUID)
    .union(CapabilitySet::SETFCAP)
    .union(CapabilitySet::SETPCAP)
    .union(CapabilitySet::NET_BIND_SERVICE)
    .union(CapabilitySet::SYS_CHROOT)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::AUDIT_WRITE);

/// Removes every capability but [`KEPT_CAPABILITIES`] from the bounding set (what the command,
/// or a set-user-ID program it runs, can ever get) and from the inheritable set.
fn drop_capabilities() -> Result<(), String> {
    for bit in 0..64u32 {
        let capability = CapabilitySet::from_bits_retain(1 << bit);
        if KEPT_CAPABILITIES.contains(capability) {
            continue;
        }
        match rustix::thread::capability_is_in_bounding_set(capability) {
            Ok(true) => rustix::thread::remove_capability_from_bounding_set(capability)
                .map_err(|e| err(format!("dropping capability {bit}"), e))?,
            Ok(false) => {}
            // Beyond the kernel's last capability.
            Err(_) => break,
        }
    }
    let mut sets = rustix::thread::capabilities(None).map_err(|e| err("capget", e))?;
    sets.inheritable = CapabilitySet::empty();
    rustix::thread::set_capabilities(None, sets).map_err(|e| err("capset", e))?;
    Ok(())
}

/// Brings up `lo` (interface 1 of a new network namespace) with one rtnetlink request, so a
/// `--network=none` step still has 127.0.0.1, as in BuildKit's `none` namespace.
fn loopback_up() -> Result<(), String> {
    use rustix::net::{AddressFamily, RecvFlags, SocketType};
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST_ACK: u16 = 1 | 4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    let socket = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None)
        .map_err(|e| e.to_string())?;
    let mut request = Vec::with_capacity(32);
    request.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    request.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    request.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // seq
    request.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    request.extend_from_slice(&[0, 0]); // ifi_family AF_UNSPEC, padding
    request.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    request.extend_from_slice(&1i32.to_ne_bytes()); // ifi_index: lo
    request.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    request.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    rustix::io::write(&socket, &request).map_err(|e| e.to_string())?;
    let mut reply = [0u8; 256];
    let (n, _) =
        rustix::net::recv(&socket, &mut reply, RecvFlags::empty()).map_err(|e| e.to_string())?;
    if n < 20 || u16::from_ne_bytes([reply[4], reply[5]]) != NLMSG_ERROR {
        return Err("unexpected rtnetlink reply".into());
    }
    match i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]) {
        0 => Ok(()),
        e => Err(format!(
            "rtnetlink: {}",
            std::io::Error::from_raw_os_error(-e)
        )),
    }
}

/// Removes from the upper dir the mount points the sandbox created (when still empty).
pub fn remove_created_mountpoints(upper: &Path, created_list: &Path) {
    let Ok(bytes) = std::fs::read(created_list) else {
        return;
    };
    let Ok(created) = serde_json::from_slice::<Vec<String>>(&bytes) else {
        return;
    };
    // Files first, then directories deepest first.
    let mut created = created;
    created.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for rel in created {
        let path = upper.join(&rel);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(&path);
            }
            Ok(m) if m.is_file() && m.size() == 0 => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
}
