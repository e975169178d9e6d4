//! Instruction flags: `RUN --mount` options, `--network`, `--security`,
//! Go-style durations and the JSON (exec) form.

use std::time::Duration;

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BindMount {
    pub target: String,
    pub source: Option<String>,
    /// Stage name/index or image; build context when `None`.
    pub from: Option<String>,
    /// Bind mounts are read-only unless `rw`.
    pub readwrite: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheMount {
    pub target: String,
    /// Cache id; defaults to the target when `None`.
    pub id: Option<String>,
    pub sharing: CacheSharing,
    pub from: Option<String>,
    pub source: Option<String>,
    pub readonly: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TmpfsMount {
    pub target: String,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretMount {
    pub id: Option<String>,
    /// Defaults to `/run/secrets/<id>` when neither target nor env is set.
    pub target: Option<String>,
    pub env: Option<String>,
    pub required: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SshMount {
    /// Defaults to `default`.
    pub id: Option<String>,
    pub target: Option<String>,
    pub required: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A parsed `RUN --mount=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    Bind(BindMount),
    Cache(CacheMount),
    Tmpfs(TmpfsMount),
    Secret(SecretMount),
    Ssh(SshMount),
}

impl Mount {
    /// The stage/image a bind or cache mount reads from.
    pub fn from(&self) -> Option<&str> {
        match self {
            Mount::Bind(b) => b.from.as_deref(),
            Mount::Cache(c) => c.from.as_deref(),
            _ => None,
        }
    }

    /// Parses the value of `--mount`. With `lenient`, numeric options that
    /// still contain a `$` (to be substituted later) are left unset.
    pub fn parse(value: &str, lenient: bool) -> Result<Mount, String> {
        let fields = split_csv(value)?;
        let mut kind = "bind".to_string();
        for f in &fields {
            let (k, v) = f.split_once('=').unwrap_or((f.as_str(), ""));
            if k.eq_ignore_ascii_case("type") {
                kind = v.to_ascii_lowercase();
            }
        }
        if !matches!(kind.as_str(), "bind" | "cache" | "tmpfs" | "secret" | "ssh") {
            return Err(format!("unsupported mount type {kind:?}"));
        }
        let mut target = None;
        let mut source = None;
        let mut from = None;
        let mut id = None;
        let mut env = None;
        let mut sharing = CacheSharing::Shared;
        let mut readonly: Option<bool> = None;
        let mut required = false;
        let (mut mode, mut uid, mut gid, mut size) = (None, None, None, None);
        for f in &fields {
            let (key, val) = match f.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
                None => (f.to_ascii_lowercase(), None),
            };
            let need = |v: &Option<String>| -> Result<String, String> {
                v.clone()
                    .ok_or_else(|| format!("invalid field '{f}' must be a key=value pair"))
            };
            let num = |v: &Option<String>, radix: u32| -> Result<Option<u32>, String> {
                let s = need(v)?;
                if lenient && s.contains('$') {
                    return Ok(None);
                }
                let t = if radix == 8 {
                    s.trim_start_matches("0o")
                } else {
                    &s
                };
                u32::from_str_radix(t, radix)
                    .map(Some)
                    .map_err(|_| format!("invalid value for {key}: {s:?}"))
            };
            let allowed_for = |kinds: &[&str]| -> Result<(), String> {
                if kinds.contains(&kind.as_str()) {
                    Ok(())
                } else {
                    Err(format!("unexpected key '{key}' for mount type '{kind}'"))
                }
            };
            match key.as_str() {
                "type" => {}
                "target" | "dst" | "destination" => target = Some(need(&val)?),
                "source" | "src" => {
                    allowed_for(&["bind", "cache", "secret"])?;
                    source = Some(need(&val)?)
                }
                "from" => {
                    allowed_for(&["bind", "cache"])?;
                    let v = need(&val)?;
                    if lenient && v.contains('$') {
                        return Err(format!(
                            "'{key}' doesn't support variable expansion, define alias stage instead"
                        ));
                    }
                    from = Some(v)
                }
                "id" => {
                    allowed_for(&["cache", "secret", "ssh"])?;
                    id = Some(need(&val)?)
                }
                "env" => {
                    allowed_for(&["secret"])?;
                    env = Some(need(&val)?)
                }
                "sharing" => {
                    allowed_for(&["cache"])?;
                    sharing = match need(&val)?.to_ascii_lowercase().as_str() {
                        "shared" => CacheSharing::Shared,
                        "private" => CacheSharing::Private,
                        "locked" => CacheSharing::Locked,
                        other => return Err(format!("unsupported sharing value {other:?}")),
                    }
                }
                "ro" | "readonly" => readonly = Some(parse_bool(&key, val.as_deref())?),
                "rw" | "readwrite" => readonly = Some(!parse_bool(&key, val.as_deref())?),
                "required" => {
                    allowed_for(&["secret", "ssh"])?;
                    required = parse_bool(&key, val.as_deref())?
                }
                "mode" => {
                    allowed_for(&["cache", "secret", "ssh"])?;
                    mode = num(&val, 8)?
                }
                "uid" => {
                    allowed_for(&["cache", "secret", "ssh"])?;
                    uid = num(&val, 10)?
                }
                "gid" => {
                    allowed_for(&["cache", "secret", "ssh"])?;
                    gid = num(&val, 10)?
                }
                "size" => {
                    allowed_for(&["tmpfs"])?;
                    let s = need(&val)?;
                    if !(lenient && s.contains('$')) {
                        size = Some(parse_size(&s)?);
                    }
                }
                _ => return Err(format!("unexpected key '{key}' in '{f}'")),
            }
        }
        let need_target =
            |t: Option<String>| t.ok_or_else(|| format!("mount type {kind} requires a target"));
        Ok(match kind.as_str() {
            "bind" => Mount::Bind(BindMount {
                target: need_target(target)?,
                source,
                from,
                readwrite: readonly == Some(false),
            }),
            "cache" => Mount::Cache(CacheMount {
                target: need_target(target)?,
                id,
                sharing,
                from,
                source,
                readonly: readonly == Some(true),
                mode,
                uid,
                gid,
            }),
            "tmpfs" => Mount::Tmpfs(TmpfsMount {
                target: need_target(target)?,
                size,
            }),
            "secret" => {
                if source.is_some() && id.is_some() {
                    return Err("both source and id can't be set".into());
                }
                let id = id.or(source);
                if id.is_none() && target.is_none() && env.is_none() {
                    return Err("invalid secret mount. one of source, target required".into());
                }
                Mount::Secret(SecretMount {
                    id,
                    target,
                    env,
                    required,
                    mode,
                    uid,
                    gid,
                })
            }
            _ => Mount::Ssh(SshMount {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            }),
        })
    }
}

/// Splits a CSV field list (double quotes group, `""` escapes a quote).
fn split_csv(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '"' if quoted && it.peek() == Some(&'"') => {
                it.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(format!("unterminated quote in {s:?}"));
    }
    out.push(cur);
    Ok(out.into_iter().filter(|f| !f.trim().is_empty()).collect())
}

fn parse_bool(key: &str, v: Option<&str>) -> Result<bool, String> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(o) => Err(format!("invalid value for {key}: {o:?}")),
    }
}

/// Parses a size such as `64m`, `1g`, `1024`, `512kb`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let n: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("invalid size {s:?}")),
    };
    Ok((n * mult as f64) as u64)
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

impl NetworkMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(Self::Default),
            "none" => Ok(Self::None),
            "host" => Ok(Self::Host),
            o => Err(format!("unsupported network mode {o:?}")),
        }
    }
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

impl SecurityMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "sandbox" => Ok(Self::Sandbox),
            "insecure" => Ok(Self::Insecure),
            o => Err(format!("unsupported security mode {o:?}")),
        }
    }
}

/// Parses a Go duration (`30s`, `1m30s`, `1.5h`, `500ms`, `0`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(err());
    }
    let s2 = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s2;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if n_end == 0 {
            return Err(err());
        }
        let n: f64 = rest[..n_end].parse().map_err(|_| err())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        rest = &rest[u_end..];
        total += n * unit;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses a JSON array of strings; `None` when `s` is not one.
pub fn parse_json_array(s: &str) -> Option<Vec<String>> {
    let c: Vec<char> = s.trim().chars().collect();
    let mut i = 0;
    let ws = |i: &mut usize| {
        while c
            .get(*i)
            .is_some_and(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
        {
            *i += 1;
        }
    };
    if c.first() != Some(&'[') {
        return None;
    }
    i += 1;
    let mut out = Vec::new();
    ws(&mut i);
    if c.get(i) == Some(&']') {
        return (i + 1 == c.len()).then_some(out);
    }
    loop {
        ws(&mut i);
        if c.get(i) != Some(&'"') {
            return None;
        }
        i += 1;
        let mut st = String::new();
        loop {
            let ch = *c.get(i)?;
            i += 1;
            match ch {
                '"' => break,
                '\\' => {
                    let e = *c.get(i)?;
                    i += 1;
                    match e {
                        '"' => st.push('"'),
                        '\\' => st.push('\\'),
                        '/' => st.push('/'),
                        'b' => st.push('\u{8}'),
                        'f' => st.push('\u{c}'),
                        'n' => st.push('\n'),
                        'r' => st.push('\r'),
                        't' => st.push('\t'),
                        'u' => {
                            let hex = |i: &mut usize| -> Option<u32> {
                                let h: String = c.get(*i..*i + 4)?.iter().collect();
                                *i += 4;
                                u32::from_str_radix(&h, 16).ok()
                            };
                            let mut cp = hex(&mut i)?;
                            if (0xD800..0xDC00).contains(&cp)
                                && c.get(i) == Some(&'\\')
                                && c.get(i + 1) == Some(&'u')
                            {
                                let save = i;
                                i += 2;
                                let lo = hex(&mut i)?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                } else {
                                    i = save;
                                }
                            }
                            st.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        }
                        _ => return None,
                    }
                }
                c if (c as u32) < 0x20 => return None,
                c => st.push(c),
            }
        }
        out.push(st);
        ws(&mut i);
        match c.get(i) {
            Some(',') => i += 1,
            Some(']') => {
                i += 1;
                ws(&mut i);
                return (i == c.len()).then_some(out);
            }
            _ => return None,
        }
    }
}
