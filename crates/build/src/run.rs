//! RUN: the sandbox spec for one step, the sandbox process, its output.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;
use strata_dockerfile::{PlannedStep, RunScript};

use crate::progress::Event;
use crate::state::StageState;
use crate::{
    DEFAULT_PATH, Engine, Result, SandboxSpec, copy, io_err, mounts, prune_untouched_copy_ups,
    sandbox, step_error,
};

/// Runs a RUN step over the stage's root filesystem (its lowers must be complete); returns the
/// overlay upper directory, which holds the step's changes, and the history `created_by`.
pub(crate) fn run_step(
    engine: &Engine<'_>,
    vertex: usize,
    step: &PlannedStep,
    run: &strata_dockerfile::Run,
    state: &StageState,
) -> Result<(PathBuf, String)> {
    use strata_dockerfile::{NetworkMode, SecurityMode};
    if !rustix::process::geteuid().is_root() {
        return Err(step_error(
            step,
            "RUN needs root, or a user namespace where strata build is root (rootless: run it under `unshare --user --map-root-user --mount --propagation private`; see docs/build.md)",
        ));
    }
    if run.security == Some(SecurityMode::Insecure) {
        // BuildKit grants it only with the `security.insecure` entitlement (`--allow`); strata
        // never runs a step with the host's full privileges.
        return Err(step_error(
            step,
            "--security=insecure needs the security.insecure entitlement, which strata build does not grant (the sandbox never runs a step with the host's full privileges)",
        ));
    }
    let no_network = run.network == Some(NetworkMode::None);
    let shell = state.shell();
    let (argv, script, display) = match run.script() {
        RunScript::Exec(v) => {
            let display = v.join(" ");
            (v, None, display)
        }
        RunScript::Shell(s) => {
            let mut argv = shell.clone();
            argv.push(s);
            let display = argv.join(" ");
            (argv, None, display)
        }
        RunScript::Shebang(body) => {
            let name = run
                .heredocs
                .first()
                .map_or_else(|| "EOF".to_string(), |h| h.name.clone());
            if name.contains('/') || name == "." || name == ".." {
                return Err(step_error(step, format!("invalid heredoc name {name:?}")));
            }
            let mut argv = shell.clone();
            argv.push(format!("{}/{name}", sandbox::SCRIPT_DIR));
            let display = argv.join(" ");
            (argv, Some((name, body)), display)
        }
    };
    if argv.is_empty() {
        return Err(step_error(step, "empty command"));
    }
    // Environment: the image's, then build args ENV does not override.
    let env = state.env();
    let mut run_env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut history_args = Vec::new();
    for (k, v) in &step.build_args {
        let is_proxy = strata_dockerfile::plan::PROXY_ARGS.contains(&k.as_str());
        match env.iter().find(|(ek, _)| ek == k) {
            Some((_, ev)) => {
                if !is_proxy {
                    history_args.push(format!("{k}={ev}"));
                }
            }
            None => {
                run_env.push(format!("{k}={v}"));
                if !is_proxy {
                    history_args.push(format!("{k}={v}"));
                }
            }
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        run_env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let mut created_by = String::from("RUN ");
    if !history_args.is_empty() {
        created_by.push_str(&format!(
            "|{} {} ",
            history_args.len(),
            history_args.join(" ")
        ));
    }
    created_by.push_str(&display);
    created_by.push_str(" # buildkit");

    let user = state
        .config
        .get("User")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (uid, gid) = copy::resolve_user(state, &user, false)
        .map_err(|m| step_error(step, format!("USER {user}: {m}")))?;

    let dir = engine.next_dir("run")?;
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d).map_err(|e| io_err(d.display(), e))?;
    }
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        format!(
            "127.0.0.1\tlocalhost {h}\n::1\tlocalhost ip6-localhost ip6-loopback {h}\n",
            h = sandbox::HOSTNAME
        ),
    )
    .map_err(|e| io_err(hosts.display(), e))?;
    let resolv = dir.join("resolv.conf");
    let resolv_text = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    std::fs::write(&resolv, resolv_text).map_err(|e| io_err(resolv.display(), e))?;
    let prepared = mounts::prepare(engine, step, run, state, &dir)?;
    let secrets_dir = dir.join("secrets");
    std::fs::create_dir_all(&secrets_dir).map_err(|e| io_err(secrets_dir.display(), e))?;
    let mut lowers: Vec<PathBuf> = state.lowers.iter().rev().cloned().collect();
    if lowers.is_empty() {
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).map_err(|e| io_err(empty.display(), e))?;
        lowers.push(empty);
    }
    let spec = SandboxSpec {
        lowers,
        upper: upper.clone(),
        work: work.clone(),
        merged: merged.clone(),
        argv,
        env: run_env,
        cwd: state.workdir(),
        uid,
        gid,
        hosts_file: hosts,
        resolv_file: resolv,
        script,
        created_list: dir.join("created.json"),
        mounts: prepared.mounts.clone(),
        secret_env: prepared.secret_env.clone(),
        secrets_dir,
        isolated_network: no_network,
    };
    let spec_path = dir.join("spec.json");
    std::fs::write(
        &spec_path,
        serde_json::to_vec(&spec).expect("JSON values serialise"),
    )
    .map_err(|e| io_err(spec_path.display(), e))?;

    // util-linux `setpriv --pdeathsig` makes `unshare` die with the builder thread that waits
    // for it, even when the builder is killed outright; `--kill-child` then takes the
    // sandbox's PID 1, and with it the whole namespace, along.
    let mut command = Command::new("setpriv");
    command.args(["--pdeathsig", "KILL", "--", "unshare"]);
    command.args([
        "--mount",
        "--pid",
        "--ipc",
        "--uts",
        "--fork",
        "--kill-child",
    ]);
    if no_network {
        command.arg("--net");
    }
    command
        .arg("--")
        .arg(&engine.options.sandbox_exe)
        .arg("build")
        .arg("__sandbox-run")
        .arg(&spec_path);
    let (reader, writer) = std::io::pipe().map_err(|e| io_err("creating a pipe", e))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| io_err("creating a pipe", e))?;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .env_clear()
        .env("PATH", DEFAULT_PATH);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| {
        step_error(
            step,
            format!("starting the sandbox (util-linux setpriv and unshare): {e}"),
        )
    })?;
    drop(command);
    // The secrets go to the sandbox on its stdin; a thread writes them so a sandbox that fails
    // before reading cannot block the builder.
    let payload = mounts::encode_payload(&prepared.payload);
    let stdin = child.stdin.take();
    let feeder = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = std::io::Write::write_all(&mut stdin, &payload);
        }
    });
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut lines = std::io::BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches('\n').to_string();
                engine.log(vertex, started, &line);
                tail.push_back(line);
                if tail.len() > 10 {
                    tail.pop_front();
                }
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| step_error(step, format!("waiting for the sandbox: {e}")))?;
    let _ = feeder.join();
    // The cache mounts' locks are released only now, when nothing uses the caches any more.
    drop(prepared);
    if !status.success() {
        let code = status.code().unwrap_or(-1);
        let original = engine.df.line(step.span.line).trim().to_string();
        let mut message = format!(
            "process \"{display}\" did not complete successfully: exit code: {code}\n------\n > {original}:"
        );
        for line in &tail {
            message.push_str(&format!("\n{line}"));
        }
        message.push_str("\n------");
        engine.progress.event(&Event::Error {
            vertex,
            message: &message,
        });
        return Err(step_error(
            step,
            format!("process \"{display}\" did not complete successfully: exit code: {code}"),
        ));
    }
    sandbox::remove_created_mountpoints(&upper, &spec.created_list);
    prune_untouched_copy_ups(&upper, &spec.created_list, state);
    mounts::prune_mount_point_ancestors(&upper, &spec.created_list, state);
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir(&merged);
    Ok((upper, created_by))
}
