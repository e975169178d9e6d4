//! `COPY/ADD --chmod` values as BuildKit takes them: an octal mode up to `07777`, or a
//! chmod(1) symbolic mode (`u+x`, `go-w`, `a+rX`, `g=u`) applied to each copied file and
//! directory from its source mode, with the rules of BSD `setmode(3)` (the Go port BuildKit
//! uses) updated as BuildKit documents them: `X` counts with `=` too, as in POSIX 2024 and
//! Linux; clauses naming no class are masked by the file creation mask (022, the Docker
//! daemon's).

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeSpec {
    Octal(u32),
    /// The operations of a symbolic mode, applied in order.
    Symbolic(Vec<Op>),
}

/// One operation of a symbolic mode, as BSD `setmode(3)` compiles it (BuildKit applies
/// symbolic modes with a Go port of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Set(u32),
    Clear(u32),
    /// Set when the source is a directory or executable by anyone (`+X`).
    SetIfSearchable(u32),
    /// Copy the permissions of class `from` (`u`, `g`, `o`) to the classes in `to`
    /// (`u`, `g`, `o` bits: 4, 2, 1), masked by `mask`; `clear`/`set` as for `-`, `+`, `=`.
    Copy {
        from: char,
        to: u8,
        mask: u32,
        clear: bool,
        set: bool,
    },
}

const SET_ID: u32 = 0o6000;
const STICKY: u32 = 0o1000;
/// Set-id bits and permissions: what `a` names (not the sticky bit).
const STANDARD: u32 = 0o6777;
/// Classes named by no letter are masked by the file creation mask, BuildKit's daemon's.
const UMASK: u32 = 0o022;

impl ModeSpec {
    /// Parses a `--chmod` value; the errors are BuildKit's.
    pub fn parse(text: &str) -> Result<ModeSpec, String> {
        let octal_error = || {
            format!(
                "invalid chmod parameter: '{text}'. it should be octal string and between 0 and 07777"
            )
        };
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match u32::from_str_radix(text, 8) {
                Ok(mode) if mode <= 0o7777 => Ok(ModeSpec::Octal(mode)),
                _ => Err(octal_error()),
            };
        }
        parse_symbolic(text)
            .map(ModeSpec::Symbolic)
            .ok_or_else(|| format!("invalid mode: {text}"))
    }

    /// The mode (permission, set-id and sticky bits) a copied entry gets, from its source
    /// `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let ops = match self {
            ModeSpec::Octal(m) => return *m,
            ModeSpec::Symbolic(ops) => ops,
        };
        let original = mode & 0o7777;
        let mut m = original;
        for op in ops {
            match op {
                Op::Set(bits) => m |= bits,
                Op::Clear(bits) => m &= !bits,
                Op::SetIfSearchable(bits) => {
                    if is_dir || original & 0o111 != 0 {
                        m |= bits;
                    }
                }
                Op::Copy {
                    from,
                    to,
                    mask,
                    clear,
                    set,
                } => {
                    let value = match from {
                        'u' => (m >> 6) & 7,
                        'g' => (m >> 3) & 7,
                        _ => m & 7,
                    };
                    for (class, shift) in [(4u8, 6), (2, 3), (1, 0)] {
                        if to & class == 0 {
                            continue;
                        }
                        if *clear {
                            let cleared = if *set { 7 } else { value };
                            m &= !((cleared << shift) & mask);
                        }
                        if *set {
                            m |= (value << shift) & mask;
                        }
                    }
                }
            }
        }
        m
    }
}

/// Compiles `[ugoa]*([-+=]([rwxXst]*|[ugo]))+` clauses, comma-separated.
fn parse_symbolic(text: &str) -> Option<Vec<Op>> {
    if text.is_empty() {
        return None;
    }
    let mask = !UMASK & 0o7777;
    let mut ops = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    loop {
        let mut who = 0;
        while let Some(&c) = bytes.get(i) {
            who |= match c {
                b'a' => STANDARD,
                b'u' => 0o4700,
                b'g' => 0o2070,
                b'o' => 0o0007,
                _ => break,
            };
            i += 1;
        }
        loop {
            let op = *bytes.get(i)?;
            if !matches!(op, b'+' | b'-' | b'=') {
                return None;
            }
            i += 1;
            who &= !STICKY;
            let mut perm = 0;
            let mut search = false;
            let mut equal_done = false;
            let emit = |ops: &mut Vec<Op>, op: u8, who: u32, perm: u32| {
                let bits = if who != 0 { who & perm } else { mask & perm };
                match op {
                    b'+' => ops.push(Op::Set(bits)),
                    b'-' => ops.push(Op::Clear(bits)),
                    _ => {
                        ops.push(Op::Clear(if who != 0 { who } else { STANDARD }));
                        ops.push(Op::Set(bits));
                    }
                }
            };
            loop {
                match bytes.get(i).copied() {
                    Some(b'r') => perm |= 0o444,
                    Some(b'w') => perm |= 0o222,
                    Some(b'x') => perm |= 0o111,
                    // `-X` clears like `-x` (it can only clear what is set).
                    Some(b'X') if op == b'-' => perm |= 0o111,
                    Some(b'X') => search = true,
                    Some(b's') => {
                        if who == 0 || who & !0o007 != 0 {
                            perm |= SET_ID;
                        }
                    }
                    Some(b't') => {
                        if who == 0 || who & !0o007 != 0 {
                            who |= STICKY;
                            perm |= STICKY;
                        }
                    }
                    Some(from @ (b'u' | b'g' | b'o')) => {
                        if perm != 0 {
                            emit(&mut ops, op, who, perm);
                            perm = 0;
                        }
                        if op == b'=' {
                            equal_done = true;
                        }
                        if search {
                            let bits = if who != 0 { who } else { mask } & 0o111;
                            ops.push(Op::SetIfSearchable(bits));
                            search = false;
                        }
                        let to = if who == 0 {
                            7
                        } else {
                            (u8::from(who & 0o400 != 0) << 2)
                                | (u8::from(who & 0o040 != 0) << 1)
                                | u8::from(who & 0o004 != 0)
                        };
                        ops.push(Op::Copy {
                            from: from as char,
                            to,
                            mask: if who == 0 { mask } else { u32::MAX },
                            clear: op != b'+',
                            set: op != b'-',
                        });
                    }
                    _ => {
                        if perm != 0 || (op == b'=' && !equal_done) {
                            emit(&mut ops, op, who, perm);
                        }
                        if search {
                            let bits = if who != 0 { who } else { mask } & 0o111;
                            ops.push(Op::SetIfSearchable(bits));
                        }
                        break;
                    }
                }
                i += 1;
            }
            match bytes.get(i) {
                None => return Some(ops),
                Some(b',') => {
                    i += 1;
                    break;
                }
                Some(_) => continue,
            }
        }
        bytes.get(i)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_and_symbolic_modes() {
        for (spec, from, is_dir, want) in [
            ("755", 0o644, false, 0o755),
            ("0600", 0o755, true, 0o600),
            ("u+x", 0o644, false, 0o744),
            ("+x", 0o644, false, 0o755),
            // No class named: the file creation mask (022) keeps group and other from `w`.
            ("+w", 0o444, false, 0o644),
            ("go-w", 0o666, false, 0o644),
            ("a+rX", 0o600, false, 0o644),
            ("a+rX", 0o700, false, 0o755),
            ("a+rX", 0o700, true, 0o755),
            ("a+rX,go-w", 0o666, true, 0o755),
            // `X` with `=` as in POSIX 2024 and Linux (BuildKit's documented example).
            ("u=rwX,go=rX", 0o700, true, 0o755),
            ("u=rwX,go=rX", 0o600, true, 0o755),
            ("u=rwX,go=rX", 0o600, false, 0o644),
            ("u=rwX,go=rX", 0o700, false, 0o755),
            ("a-X", 0o755, true, 0o644),
            ("g=u", 0o640, false, 0o660),
            ("go=u-w", 0o750, false, 0o755),
            ("a=r", 0o777, false, 0o444),
            ("u=rwx,g=rx,o=rx", 0o600, false, 0o755),
            ("u+s", 0o755, false, 0o4755),
            ("o+s", 0o755, false, 0o755),
            ("+t", 0o755, true, 0o1755),
            ("=", 0o4755, false, 0),
        ] {
            let parsed = ModeSpec::parse(spec).unwrap();
            assert_eq!(parsed.apply(from, is_dir), want, "{spec} on {from:o}");
        }
    }

    #[test]
    fn invalid_modes() {
        assert!(ModeSpec::parse("8").unwrap_err().contains("octal string"));
        assert!(ModeSpec::parse("17777").unwrap_err().contains("07777"));
        assert!(ModeSpec::parse("u+q").is_err());
        assert!(ModeSpec::parse("").is_err());
        assert!(ModeSpec::parse("u").is_err());
        assert!(ModeSpec::parse("u+x,").is_err());
        assert!(ModeSpec::parse("u+x,,g+x").is_err());
    }
}
