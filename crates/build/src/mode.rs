//! `COPY/ADD --chmod` values as BuildKit takes them: an octal mode up to `07777`, or a
//! chmod(1) symbolic mode (`u+x`, `go-w`, `u=rwX,go=rX`, `g=u`) applied to each copied file
//! and directory from its source mode.

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeSpec {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// One comma-separated part of a symbolic mode: who it applies to and its operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Bits of the classes named (`u`, `g`, `o`; none or `a` means all).
    who: u32,
    ops: Vec<(char, Perm)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perm {
    /// `r`, `w`, `x`, `s`, `t` as bits; `X` separately (depends on the file).
    Bits { bits: u32, search: bool },
    /// `u`, `g` or `o`: the permissions that class has now.
    Copy(char),
}

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

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
        let mut clauses = Vec::new();
        for part in text.split(',') {
            clauses.push(parse_clause(part).ok_or_else(|| format!("invalid mode: {text}"))?);
        }
        Ok(ModeSpec::Symbolic(clauses))
    }

    /// The mode (permission and set-id bits) a copied entry gets, from its source `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            ModeSpec::Octal(m) => *m,
            ModeSpec::Symbolic(clauses) => {
                let mut m = mode & 0o7777;
                for clause in clauses {
                    for (op, perm) in &clause.ops {
                        let bits = match perm {
                            Perm::Bits { bits, search } => {
                                let x = if *search && (is_dir || m & 0o111 != 0) {
                                    0o111
                                } else {
                                    0
                                };
                                (bits | x) & clause.who
                            }
                            Perm::Copy(class) => {
                                let shift = match class {
                                    'u' => 6,
                                    'g' => 3,
                                    _ => 0,
                                };
                                let rwx = (m >> shift) & 0o7;
                                (rwx * 0o111) & clause.who
                            }
                        };
                        m = match op {
                            '+' => m | bits,
                            '-' => m & !bits,
                            _ => (m & !clause.who) | bits,
                        };
                    }
                }
                m
            }
        }
    }
}

fn parse_clause(part: &str) -> Option<Clause> {
    let mut chars = part.chars().peekable();
    let mut who = 0;
    while let Some(&c) = chars.peek() {
        who |= match c {
            'u' => USER,
            'g' => GROUP,
            'o' => OTHER,
            'a' => 0o7777,
            _ => break,
        };
        chars.next();
    }
    if who == 0 {
        who = 0o7777;
    }
    let mut ops = Vec::new();
    while let Some(op) = chars.next() {
        if !matches!(op, '+' | '-' | '=') {
            return None;
        }
        let perm = match chars.peek() {
            Some(&c @ ('u' | 'g' | 'o')) => {
                chars.next();
                Perm::Copy(c)
            }
            _ => {
                let mut bits = 0;
                let mut search = false;
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' => bits |= 0o444,
                        'w' => bits |= 0o222,
                        'x' => bits |= 0o111,
                        'X' => search = true,
                        's' => bits |= 0o6000,
                        't' => bits |= 0o1000,
                        _ => break,
                    }
                    chars.next();
                }
                Perm::Bits { bits, search }
            }
        };
        ops.push((op, perm));
    }
    (!ops.is_empty()).then_some(Clause { who, ops })
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
            ("go-w", 0o666, false, 0o644),
            ("u=rwX,go=rX", 0o600, false, 0o644),
            ("u=rwX,go=rX", 0o700, false, 0o755),
            ("u=rwX,go=rX", 0o600, true, 0o755),
            ("g=u", 0o640, false, 0o660),
            ("a=r", 0o777, false, 0o444),
            ("u=rwx,g=rx,o=rx", 0o600, false, 0o755),
            ("u+s", 0o755, false, 0o4755),
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
    }
}
