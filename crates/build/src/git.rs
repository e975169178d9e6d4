//! ADD of git repositories (`git@host:repo`, `git://`, `ssh://`, HTTP(S) URLs whose path ends
//! in `.git`), with BuildKit's `#ref[:subdir]` fragment and `--keep-git-dir`.
//!
//! The `git` command does the transport, as BuildKit's git source does: the ref is resolved to
//! a commit with `git ls-remote` (the cache key), fetched into the build's `downloads`
//! directory (shallow when the server allows, in full otherwise, e.g. over dumb HTTP) and
//! checked out; the work tree (without `.git` unless `--keep-git-dir=true`) is then copied
//! like a directory source.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::Digest as _;

/// A parsed git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    pub remote: String,
    /// Branch, tag or commit; empty for the remote's HEAD.
    pub reference: String,
    /// A directory of the repository to copy instead of its root.
    pub subdir: String,
}

impl GitRef {
    pub fn parse(src: &str) -> Result<GitRef, String> {
        let (remote, fragment) = match src.split_once('#') {
            Some((r, f)) => (r, f),
            None => (src, ""),
        };
        let (reference, subdir) = match fragment.split_once(':') {
            Some((r, s)) => (r, s),
            None => (fragment, ""),
        };
        // Everything reaches `git` as an argument: nothing may read as an option.
        if remote.starts_with('-') || reference.starts_with('-') {
            return Err(format!("invalid git source: {src}"));
        }
        let subdir = crate::pattern::clean_relative(subdir)
            .ok_or_else(|| format!("{src}: the subdirectory leaves the repository"))?;
        Ok(GitRef {
            remote: remote.to_string(),
            reference: reference.to_string(),
            subdir,
        })
    }
}

fn git(dir: Option<&Path>) -> Command {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    // No prompts, no host configuration steering the fetch.
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "ADD of a git repository needs the git command, which is not installed".to_string()
        } else {
            format!("{what}: {e}")
        }
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{what}: {}", stderr.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_commit(reference: &str) -> bool {
    reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `source`'s ref names on the remote, when `git ls-remote` can tell (a commit id
/// names itself).
pub fn resolve(source: &GitRef) -> Result<String, String> {
    if is_commit(&source.reference) {
        return Ok(source.reference.to_ascii_lowercase());
    }
    let wanted = if source.reference.is_empty() {
        "HEAD".to_string()
    } else {
        source.reference.clone()
    };
    let mut cmd = git(None);
    cmd.args(["ls-remote", "--", &source.remote, &wanted]);
    let listing = run(cmd, &format!("git ls-remote {}", source.remote))?;
    // Prefer an exact ref, then a branch, then a tag (peeled to its commit).
    let refs: Vec<(&str, &str)> = listing.lines().filter_map(|l| l.split_once('\t')).collect();
    let pick = |name: &str| refs.iter().find(|(_, r)| *r == name).map(|(c, _)| *c);
    let commit = pick(&wanted)
        .or_else(|| pick(&format!("refs/heads/{wanted}")))
        .or_else(|| pick(&format!("refs/tags/{wanted}^{{}}")))
        .or_else(|| pick(&format!("refs/tags/{wanted}")))
        .ok_or_else(|| format!("{}: no ref {wanted} on the remote", source.remote))?;
    Ok(commit.to_string())
}

/// Checks `commit` out of the remote into `downloads` (once per build and commit); returns the
/// directory to copy (the work tree, or its `subdir`).
pub fn checkout(
    downloads: &Path,
    source: &GitRef,
    commit: &str,
    keep_git_dir: bool,
) -> Result<PathBuf, String> {
    let name = hex::encode(sha2::Sha256::digest(
        format!("{}\n{commit}\n{keep_git_dir}", source.remote).as_bytes(),
    ));
    let dir = downloads.join(format!("git-{name}"));
    // Marks a finished checkout (outside the tree, which is copied whole).
    let done = downloads.join(format!("git-{name}.done"));
    if !done.exists() {
        // Parallel stages may check out the same commit: each works in its own directory and
        // the first to finish puts its tree in place.
        let work = downloads.join(format!("git-{name}.tmp-{}", crate::add::unique()));
        let result = fetch_into(&work, source, commit, keep_git_dir);
        if result.is_ok() && !done.exists() && std::fs::rename(&work, &dir).is_ok() {
            std::fs::write(&done, commit).map_err(|e| format!("{}: {e}", done.display()))?;
        }
        let _ = std::fs::remove_dir_all(&work);
        result?;
    }
    let tree = if source.subdir.is_empty() {
        dir
    } else {
        dir.join(&source.subdir)
    };
    if !std::fs::symlink_metadata(&tree).is_ok_and(|m| m.is_dir()) {
        return Err(format!(
            "{}: no directory {} in the repository",
            source.remote, source.subdir
        ));
    }
    Ok(tree)
}

/// Fetches `commit` of the remote into a new repository at `dir` and checks it out.
fn fetch_into(dir: &Path, source: &GitRef, commit: &str, keep_git_dir: bool) -> Result<(), String> {
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut init = git(Some(dir));
        init.args(["init", "-q"]);
        run(init, "git init")?;
        let fetch_ref = if source.reference.is_empty() {
            "HEAD"
        } else {
            &source.reference
        };
        let mut shallow = git(Some(dir));
        shallow.args([
            "fetch",
            "-q",
            "--depth=1",
            "--no-tags",
            "--",
            &source.remote,
            fetch_ref,
        ]);
        if run(shallow, "git fetch").is_err() {
            // Dumb HTTP and servers that refuse shallow or by-id fetches: fetch everything.
            let mut full = git(Some(dir));
            full.args([
                "fetch",
                "-q",
                "--tags",
                "--",
                &source.remote,
                "+refs/heads/*:refs/remotes/origin/*",
            ]);
            run(full, &format!("git fetch {}", source.remote))?;
        }
        let mut co = git(Some(dir));
        co.args([
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "-q",
            commit,
            "--",
        ]);
        run(co, &format!("git checkout {commit}"))?;
        if !keep_git_dir {
            std::fs::remove_dir_all(dir.join(".git"))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_refs_parse() {
        let r = GitRef::parse("https://h/r.git#v1:sub/dir").unwrap();
        assert_eq!(
            (r.remote.as_str(), r.reference.as_str(), r.subdir.as_str()),
            ("https://h/r.git", "v1", "sub/dir")
        );
        let r = GitRef::parse("git@github.com:o/r.git").unwrap();
        assert_eq!((r.reference.as_str(), r.subdir.as_str()), ("", ""));
        assert!(GitRef::parse("https://h/r.git#--upload-pack=x").is_err());
        assert!(GitRef::parse("https://h/r.git#main:../x").is_err());
    }
}
