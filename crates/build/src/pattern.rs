//! Path patterns: Go `filepath.Match` globs (COPY sources) and Docker's `.dockerignore` rules.

/// Whether `pattern` (Go `filepath.Match` syntax, plus `**` for any number of path components)
/// matches the whole of `name`. Both are relative paths with `/` separators.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    if p.is_empty() {
        return n.is_empty();
    }
    match p[0] {
        '*' if p.get(1) == Some(&'*') => {
            // `**` matches any sequence, separators included; `**/` may match nothing.
            let mut rest = &p[2..];
            if rest.first() == Some(&'/') {
                if match_from(&rest[1..], n) {
                    return true;
                }
                rest = &p[2..];
            }
            (0..=n.len()).any(|i| match_from(rest, &n[i..]))
        }
        '*' => {
            let rest = &p[1..];
            for i in 0..=n.len() {
                if match_from(rest, &n[i..]) {
                    return true;
                }
                if i < n.len() && n[i] == '/' {
                    break;
                }
            }
            false
        }
        '?' => !n.is_empty() && n[0] != '/' && match_from(&p[1..], &n[1..]),
        '[' => {
            let Some(&c) = n.first() else { return false };
            if c == '/' {
                return false;
            }
            let mut i = 1;
            let negate = matches!(p.get(1), Some('^') | Some('!'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while i < p.len() && (first || p[i] != ']') {
                first = false;
                let mut lo = p[i];
                if lo == '\\' && i + 1 < p.len() {
                    i += 1;
                    lo = p[i];
                }
                let mut hi = lo;
                if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&h| h != ']') {
                    hi = p[i + 2];
                    i += 2;
                }
                if lo <= c && c <= hi {
                    matched = true;
                }
                i += 1;
            }
            if i >= p.len() {
                return false; // malformed class
            }
            matched != negate && match_from(&p[i + 1..], &n[1..])
        }
        '\\' if p.len() > 1 => !n.is_empty() && n[0] == p[1] && match_from(&p[2..], &n[1..]),
        c => !n.is_empty() && n[0] == c && match_from(&p[1..], &n[1..]),
    }
}

pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Cleans a relative path the way Go's `filepath.Clean` does, then strips leading `/` and `./`.
/// Returns `None` when it climbs above its root.
pub fn clean_relative(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Cleans an absolute path (`..` at the root stays at the root).
pub fn clean_absolute(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `.dockerignore` rules.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<(String, bool)>,
}

impl IgnoreRules {
    /// Parses a `.dockerignore` file: one pattern per line, `#` comments, `!` exceptions.
    pub fn parse(text: &str) -> IgnoreRules {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean_absolute(pattern);
            let cleaned = cleaned.trim_start_matches('/');
            if cleaned.is_empty() {
                continue;
            }
            rules.push((cleaned.to_string(), exception));
        }
        IgnoreRules { rules }
    }

    /// Whether `path` (relative to the context, cleaned) is excluded: the last matching rule
    /// wins, and a pattern matching a parent directory matches everything beneath it.
    pub fn is_excluded(&self, path: &str) -> bool {
        let mut excluded = false;
        for (pattern, exception) in &self.rules {
            let mut matched = glob_match(pattern, path);
            if !matched {
                let mut prefix = path;
                while let Some((parent, _)) = prefix.rsplit_once('/') {
                    if glob_match(pattern, parent) {
                        matched = true;
                        break;
                    }
                    prefix = parent;
                }
            }
            if matched {
                excluded = !exception;
            }
        }
        excluded
    }

    /// Whether some exception could re-include something beneath the excluded `dir`.
    pub fn may_include_below(&self, dir: &str) -> bool {
        self.rules.iter().any(|(pattern, exception)| {
            *exception && (pattern.starts_with(&format!("{dir}/")) || pattern.contains("**"))
        })
    }

    /// These rules followed by `patterns` (`.dockerignore` syntax, `!` exceptions) that are
    /// relative to the directory `base` (relative to the root, cleaned).
    pub fn with_rules_below(&self, base: &str, patterns: &[String]) -> IgnoreRules {
        let mut combined = self.clone();
        let rooted: Vec<String> = patterns
            .iter()
            .map(|p| {
                let (bang, pattern) = match p.trim().strip_prefix('!') {
                    Some(rest) => ("!", rest.trim()),
                    None => ("", p.trim()),
                };
                if base.is_empty() {
                    format!("{bang}{pattern}")
                } else {
                    format!("{bang}{base}/{}", pattern.trim_start_matches('/'))
                }
            })
            .collect();
        combined
            .rules
            .extend(IgnoreRules::parse(&rooted.join("\n")).rules);
        combined
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_go() {
        for (p, n, want) in [
            ("*.txt", "a.txt", true),
            ("*.txt", "d/a.txt", false),
            ("d/*.txt", "d/a.txt", true),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("**/*.go", "a/b/c.go", true),
            ("**/*.go", "c.go", true),
            ("a/**", "a/b/c", true),
            ("file", "file", true),
        ] {
            assert_eq!(glob_match(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn dockerignore_rules() {
        let rules = IgnoreRules::parse("# c\n*.log\n!keep.log\nsecret/\n/tmp/**\n");
        assert!(rules.is_excluded("a.log"));
        assert!(!rules.is_excluded("keep.log"));
        assert!(rules.is_excluded("secret/x"));
        assert!(rules.is_excluded("tmp/a/b"));
        assert!(!rules.is_excluded("src/a.rs"));
        assert!(!rules.is_excluded("d/a.log"));
    }

    #[test]
    fn rules_below_a_directory() {
        let context = IgnoreRules::parse("secret\n");
        let rules =
            context.with_rules_below("src", &["*.log".to_string(), "!keep.log".to_string()]);
        assert!(rules.is_excluded("secret"));
        assert!(rules.is_excluded("src/a.log"));
        assert!(!rules.is_excluded("src/keep.log"));
        assert!(!rules.is_excluded("a.log"));
        assert!(!rules.is_excluded("src/sub/a.log"));
        let top = IgnoreRules::default().with_rules_below("", &["tmp/".to_string()]);
        assert!(top.is_excluded("tmp/x"));
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean_relative("./a/../b/"), Some("b".into()));
        assert_eq!(clean_relative("../x"), None);
        assert_eq!(clean_absolute("/a/../../b/."), "/b");
    }
}
