//! `--change` instructions of `strata import`, as `docker import --change` takes them: a
//! Dockerfile instruction applied to the image config.

use serde_json::{Map, Value, json};

use crate::{ImageError, Result};

/// Applies one instruction such as `CMD ["sh"]` or `ENV A=1 B=2` to a config's `config` object.
pub fn apply_change(config: &mut Map<String, Value>, input: &str) -> Result<()> {
    let err = |message: &str| ImageError::Change {
        input: input.to_string(),
        message: message.to_string(),
    };
    let trimmed = input.trim();
    let (instruction, args) = trimmed
        .split_once(char::is_whitespace)
        .unwrap_or((trimmed, ""));
    let args = args.trim();
    match instruction.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), json!(command_form(args)));
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), json!(command_form(args)));
        }
        "SHELL" => {
            let shell = json_array(args)
                .ok_or_else(|| err("SHELL needs the JSON form, e.g. [\"/bin/bash\", \"-c\"]"))?;
            config.insert("Shell".into(), json!(shell));
        }
        "ENV" => {
            let pairs = key_values(args, true).map_err(|m| err(&m))?;
            let env = config.entry("Env").or_insert_with(|| json!([]));
            let list = env.as_array_mut().ok_or_else(|| err("Env is not a list"))?;
            for (key, value) in pairs {
                let prefix = format!("{key}=");
                list.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&prefix)));
                list.push(Value::String(format!("{key}={value}")));
            }
        }
        "LABEL" => {
            let pairs = key_values(args, false).map_err(|m| err(&m))?;
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            let labels = labels
                .as_object_mut()
                .ok_or_else(|| err("Labels is not an object"))?;
            for (key, value) in pairs {
                labels.insert(key, Value::String(value));
            }
        }
        "EXPOSE" => {
            let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            let ports = ports
                .as_object_mut()
                .ok_or_else(|| err("ExposedPorts is not an object"))?;
            if args.is_empty() {
                return Err(err("EXPOSE needs at least one port"));
            }
            for port in args.split_whitespace() {
                ports.insert(normalize_port(port).map_err(|m| err(&m))?, json!({}));
            }
        }
        "VOLUME" => {
            let paths = json_array(args)
                .unwrap_or_else(|| args.split_whitespace().map(str::to_string).collect());
            if paths.is_empty() {
                return Err(err("VOLUME needs at least one path"));
            }
            let volumes = config.entry("Volumes").or_insert_with(|| json!({}));
            let volumes = volumes
                .as_object_mut()
                .ok_or_else(|| err("Volumes is not an object"))?;
            for path in paths {
                volumes.insert(path, json!({}));
            }
        }
        "USER" => single(config, "User", args).map_err(|m| err(&m))?,
        "WORKDIR" => single(config, "WorkingDir", args).map_err(|m| err(&m))?,
        "STOPSIGNAL" => single(config, "StopSignal", args).map_err(|m| err(&m))?,
        "ONBUILD" => {
            if args.is_empty() {
                return Err(err("ONBUILD needs an instruction"));
            }
            let list = config.entry("OnBuild").or_insert_with(|| json!([]));
            list.as_array_mut()
                .ok_or_else(|| err("OnBuild is not a list"))?
                .push(Value::String(args.to_string()));
        }
        "" => return Err(err("empty instruction")),
        other => {
            return Err(err(&format!(
                "{other} cannot be changed on import (use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, SHELL, STOPSIGNAL, USER, VOLUME or WORKDIR)"
            )));
        }
    }
    Ok(())
}

fn single(config: &mut Map<String, Value>, field: &str, args: &str) -> Result<(), String> {
    if args.is_empty() {
        return Err(format!("{field} needs a value"));
    }
    config.insert(field.into(), Value::String(args.to_string()));
    Ok(())
}

fn json_array(args: &str) -> Option<Vec<String>> {
    if !args.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(args).ok()
}

/// JSON (exec) form as given; anything else is shell form run by `/bin/sh -c`.
fn command_form(args: &str) -> Vec<String> {
    json_array(args).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), args.to_string()])
}

fn normalize_port(port: &str) -> Result<String, String> {
    let (number, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
    let valid_number = |n: &str| n.parse::<u16>().is_ok_and(|n| n > 0);
    let valid = match number.split_once('-') {
        Some((a, b)) => valid_number(a) && valid_number(b),
        None => valid_number(number),
    };
    let protocol = protocol.to_ascii_lowercase();
    if !valid || !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid port {port:?}"));
    }
    Ok(format!("{number}/{protocol}"))
}

/// `k=v k2="v 2"` pairs; with `legacy_space`, `ENV key value with spaces` too.
fn key_values(args: &str, legacy_space: bool) -> Result<Vec<(String, String)>, String> {
    let words = shell_words(args)?;
    if words.is_empty() {
        return Err("needs at least one key=value".into());
    }
    if !words[0].contains('=') {
        if legacy_space && words.len() >= 2 {
            let (key, value) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
            return Ok(vec![(key.to_string(), value.trim().to_string())]);
        }
        return Err(format!("{:?} is not key=value", words[0]));
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{w:?} is not key=value")),
        })
        .collect()
}

/// Splits on unquoted whitespace, removing quotes and backslash escapes.
fn shell_words(input: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => current.extend(chars.next()),
                        Some(other) => current.push(other),
                        None => return Err(format!("unterminated {c} quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                current.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(changes: &[&str], expected: Result<Value, &str>) {
        let mut config = Map::new();
        let result = changes
            .iter()
            .try_for_each(|c| apply_change(&mut config, c))
            .map(|()| Value::Object(config));
        match (result, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{changes:?}"),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{changes:?}: {e}"),
            (got, want) => panic!("{changes:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn changes() {
        check(&[r#"CMD ["sh"]"#], Ok(json!({"Cmd": ["sh"]})));
        check(
            &["CMD echo hi"],
            Ok(json!({"Cmd": ["/bin/sh", "-c", "echo hi"]})),
        );
        check(&["cmd [\"a\", \"b\"]"], Ok(json!({"Cmd": ["a", "b"]})));
        check(
            &[r#"ENTRYPOINT ["/init"]"#],
            Ok(json!({"Entrypoint": ["/init"]})),
        );
        check(
            &["ENV A=1 B=\"two words\""],
            Ok(json!({"Env": ["A=1", "B=two words"]})),
        );
        check(&["ENV A 1 2"], Ok(json!({"Env": ["A=1 2"]})));
        check(&["ENV A=1", "ENV A=2"], Ok(json!({"Env": ["A=2"]})));
        check(
            &["LABEL a.b=c 'd e'=f"],
            Ok(json!({"Labels": {"a.b": "c", "d e": "f"}})),
        );
        check(
            &["EXPOSE 80 443/udp 8000-8010"],
            Ok(json!({"ExposedPorts": {"80/tcp": {}, "443/udp": {}, "8000-8010/tcp": {}}})),
        );
        check(&["EXPOSE 99999"], Err("invalid port"));
        check(&["EXPOSE 80/xyz"], Err("invalid port"));
        check(
            &["VOLUME /data /logs"],
            Ok(json!({"Volumes": {"/data": {}, "/logs": {}}})),
        );
        check(
            &[r#"VOLUME ["/data"]"#],
            Ok(json!({"Volumes": {"/data": {}}})),
        );
        check(&["USER 1000:1000"], Ok(json!({"User": "1000:1000"})));
        check(&["WORKDIR /app"], Ok(json!({"WorkingDir": "/app"})));
        check(
            &["STOPSIGNAL SIGTERM"],
            Ok(json!({"StopSignal": "SIGTERM"})),
        );
        check(&["ONBUILD RUN make"], Ok(json!({"OnBuild": ["RUN make"]})));
        check(
            &[r#"SHELL ["/bin/bash", "-c"]"#],
            Ok(json!({"Shell": ["/bin/bash", "-c"]})),
        );
        check(&["SHELL bash"], Err("JSON form"));
        check(&["RUN make"], Err("cannot be changed on import"));
        check(&["USER"], Err("needs a value"));
        check(&["LABEL a"], Err("not key=value"));
        check(&["ENV A=\"x"], Err("unterminated"));
        check(&[""], Err("empty instruction"));
    }
}
