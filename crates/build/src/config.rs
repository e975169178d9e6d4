//! Metadata instructions: how each updates the image config and what history `created_by`
//! BuildKit records for it.

use std::time::Duration;

use serde_json::{Map, Value, json};
use strata_dockerfile::{Command, Healthcheck, Instruction, PlannedStep};

use crate::pattern::clean_absolute;
use crate::state::StageState;
use crate::{BuildError, step_error};

/// Adds BuildKit's default `PATH` to a base image's `Env` that has none, as BuildKit does for
/// every stage (and so for the image it exports).
pub fn ensure_default_path(config: &mut Map<String, Value>) {
    if env_pairs(config).iter().any(|(k, _)| k == "PATH") {
        return;
    }
    let entry = config
        .entry("Env")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    if let Some(env) = entry.as_array_mut() {
        env.push(json!(format!("PATH={}", crate::DEFAULT_PATH)));
    }
}

/// `KEY=value` entries of a config's `Env` as pairs.
pub fn env_pairs(config: &Map<String, Value>) -> Vec<(String, String)> {
    config
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|e| {
                    let (k, v) = e.split_once('=').unwrap_or((e, ""));
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The config object with Go's field order (`dockerspec.ImageConfig`), unknown keys last.
pub fn ordered(config: &Map<String, Value>) -> Map<String, Value> {
    const ORDER: [&str; 13] = [
        "User",
        "ExposedPorts",
        "Env",
        "Entrypoint",
        "Cmd",
        "Volumes",
        "WorkingDir",
        "Labels",
        "StopSignal",
        "ArgsEscaped",
        "Healthcheck",
        "OnBuild",
        "Shell",
    ];
    let mut out = Map::new();
    for key in ORDER {
        if let Some(v) = config.get(key).filter(|v| !is_empty(v)) {
            out.insert(key.to_string(), v.clone());
        }
    }
    for (k, v) in config {
        if !ORDER.contains(&k.as_str()) && !is_empty(v) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(b) => !b,
        _ => false,
    }
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a `[]string`: `[a b]`.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `time.Duration.String()`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1u128)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", trim_fraction(nanos, div));
    }
    let total_secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs = total_secs % 60;
    let secs_text = trim_fraction(secs * 1_000_000_000 + frac, 1_000_000_000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h{minutes}m"));
    } else if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&secs_text);
    out.push('s');
    out
}

fn trim_fraction(value: u128, div: u128) -> String {
    let whole = value / div;
    let frac = value % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let text = format!("{frac:0width$}");
    format!("{whole}.{}", text.trim_end_matches('0'))
}

fn command_args(command: &Command, shell: &[String]) -> Vec<String> {
    match command {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = shell.to_vec();
            v.push(s.clone());
            v
        }
    }
}

fn set_env(config: &mut Map<String, Value>, key: &str, value: &str) {
    let mut env: Vec<Value> = config
        .get("Env")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let entry = json!(format!("{key}={value}"));
    match env.iter().position(|e| {
        e.as_str()
            .is_some_and(|s| s.split_once('=').map_or(s, |(k, _)| k) == key)
    }) {
        Some(i) => env[i] = entry,
        None => env.push(entry),
    }
    config.insert("Env".into(), Value::Array(env));
}

fn object<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = config
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("made an object above")
}

/// Expands `80`, `80/udp`, `8000-8002/tcp` into BuildKit's `ExposedPorts` keys.
fn exposed_ports(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    let proto = match proto.as_str() {
        "" => "tcp".to_string(),
        "tcp" | "udp" | "sctp" => proto,
        _ => return Err(format!("invalid port: {spec:?}: invalid proto: {proto}")),
    };
    // `ip:host:container` forms keep the container part.
    let ports = ports.rsplit(':').next().unwrap_or(ports);
    let parse = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {s}"))
    };
    match ports.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if hi < lo {
                return Err(format!("invalid port range: {ports}"));
            }
            Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
        }
        None => Ok(vec![format!("{}/{proto}", parse(ports)?)]),
    }
}

/// Applies a metadata instruction; returns the history `created_by` (the entry is an empty
/// layer), or `None` when BuildKit records no history.
pub fn apply(
    instruction: &Instruction,
    step: &PlannedStep,
    state: &mut StageState,
) -> Result<Option<String>, BuildError> {
    let shell = state.shell();
    let config = &mut state.config;
    Ok(Some(match instruction {
        Instruction::Env(e) => {
            let mut msg = String::from("ENV");
            for kv in &e.vars {
                set_env(config, &kv.key, &kv.value);
                msg.push_str(&format!(" {}={}", kv.key, kv.value));
            }
            msg
        }
        Instruction::Label(l) => {
            let mut msg = String::from("LABEL");
            let labels = object(config, "Labels");
            for kv in &l.labels {
                labels.insert(kv.key.clone(), json!(kv.value));
                msg.push_str(&format!(" {}={}", kv.key, kv.value));
            }
            msg
        }
        Instruction::Cmd(c) => {
            let args = command_args(&c.command, &shell);
            config.insert("Cmd".into(), json!(args));
            // BuildKit sets it for every CMD (Docker image spec compatibility).
            config.insert("ArgsEscaped".into(), json!(true));
            state.cmd_set = true;
            format!("CMD {}", go_quote_list(&args))
        }
        Instruction::Entrypoint(e) => {
            let args = command_args(&e.command, &shell);
            config.insert("Entrypoint".into(), json!(args));
            if !state.cmd_set {
                config.remove("Cmd");
            }
            format!("ENTRYPOINT {}", go_quote_list(&args))
        }
        Instruction::Workdir(w) => {
            let previous = match config.get("WorkingDir").and_then(Value::as_str) {
                Some(p) if !p.is_empty() => p.to_string(),
                _ => "/".to_string(),
            };
            let path = if w.path.starts_with('/') {
                clean_absolute(&w.path)
            } else {
                clean_absolute(&format!("{previous}/{}", w.path))
            };
            config.insert("WorkingDir".into(), json!(path));
            format!("WORKDIR {path}")
        }
        Instruction::User(u) => {
            config.insert("User".into(), json!(u.user));
            format!("USER {}", u.user)
        }
        Instruction::Expose(e) => {
            let mut all = Vec::new();
            for spec in &e.ports {
                all.extend(exposed_ports(spec).map_err(|m| step_error(step, m))?);
            }
            let ports = object(config, "ExposedPorts");
            for p in &all {
                ports.insert(p.clone(), json!({}));
            }
            format!("EXPOSE {}", go_list(&all))
        }
        Instruction::Volume(v) => {
            let volumes = object(config, "Volumes");
            for p in &v.paths {
                if p.is_empty() {
                    return Err(step_error(
                        step,
                        "VOLUME specified can not be an empty string",
                    ));
                }
                volumes.insert(p.clone(), json!({}));
            }
            format!("VOLUME {}", go_list(&v.paths))
        }
        Instruction::Stopsignal(s) => {
            config.insert("StopSignal".into(), json!(s.signal));
            format!("STOPSIGNAL {}", s.signal)
        }
        Instruction::Shell(s) => {
            config.insert("Shell".into(), json!(s.shell));
            format!("SHELL {}", go_list(&s.shell))
        }
        Instruction::Maintainer(m) => {
            state.author = Some(m.name.clone());
            format!("MAINTAINER {}", m.name)
        }
        Instruction::Onbuild(o) => {
            let mut list = config
                .get("OnBuild")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            list.push(json!(o.expression));
            config.insert("OnBuild".into(), Value::Array(list));
            // BuildKit records no history for ONBUILD.
            return Ok(None);
        }
        Instruction::Healthcheck(h) => {
            let (test, durations, retries) = match h {
                Healthcheck::None => (vec!["NONE".to_string()], [None; 4], None),
                Healthcheck::Cmd {
                    command,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => {
                    let test = match command {
                        Command::Exec(v) => {
                            let mut t = vec!["CMD".to_string()];
                            t.extend(v.iter().cloned());
                            t
                        }
                        Command::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                    };
                    (
                        test,
                        [*interval, *timeout, *start_period, *start_interval],
                        *retries,
                    )
                }
            };
            let mut hc = Map::new();
            hc.insert("Test".into(), json!(test));
            for (name, d) in ["Interval", "Timeout", "StartPeriod", "StartInterval"]
                .iter()
                .zip(durations)
            {
                if let Some(d) = d.filter(|d| !d.is_zero()) {
                    hc.insert(name.to_string(), json!(d.as_nanos() as u64));
                }
            }
            if let Some(r) = retries.filter(|r| *r != 0) {
                hc.insert("Retries".into(), json!(r));
            }
            config.insert("Healthcheck".into(), Value::Object(hc));
            // Go's `%+v` of the HealthcheckConfig struct.
            let d = |x: Option<Duration>| go_duration(x.unwrap_or_default());
            format!(
                "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
                go_list(&test),
                d(durations[0]),
                d(durations[1]),
                d(durations[2]),
                d(durations[3]),
                retries.unwrap_or(0),
            )
        }
        Instruction::Arg(a) => {
            let parts: Vec<String> = a
                .args
                .iter()
                .map(|d| {
                    // The value in effect: build arg, expanded default or global value.
                    match step.build_args.iter().find(|(k, _)| k == &d.name) {
                        Some((_, v)) => format!("{}={v}", d.name),
                        None => match &d.default {
                            Some(v) => format!("{}={v}", d.name),
                            None => d.name.clone(),
                        },
                    }
                })
                .collect();
            format!("ARG {}", parts.join(" "))
        }
        Instruction::From(_) | Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => {
            return Ok(None);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formatting() {
        assert_eq!(
            go_quote_list(&["/bin/sh".into(), "-c".into(), "echo \"hi\"".into()]),
            r#"["/bin/sh" "-c" "echo \"hi\""]"#
        );
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn ports() {
        assert_eq!(exposed_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(exposed_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            exposed_ports("8000-8002").unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(exposed_ports("http").is_err());
    }
}
