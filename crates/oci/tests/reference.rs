//! Reference parsing against the test vectors of Docker's
//! `github.com/distribution/reference` (normalize_test.go, reference_test.go),
//! expressed through `ParseNormalizedNamed` semantics.

use strata_oci::{Digest, Reference, ReferenceError};

const SHA256_F: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
const SHA512_F: &str = "sha512:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
const REDIS_DIGEST: &str =
    "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
const HEX64: &str = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

/// What a valid input must parse to.
struct Parsed<'a> {
    input: &'a str,
    domain: &'a str,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

const fn parsed<'a>(
    input: &'a str,
    domain: &'a str,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
) -> Parsed<'a> {
    Parsed {
        input,
        domain,
        path,
        tag,
        digest,
    }
}

/// Runs every case and reports all mismatches together, so one run shows
/// the whole picture instead of the first failure.
fn check_all<T>(cases: &[T], check: impl Fn(&T) -> Result<(), String>) {
    let failures: Vec<String> = cases.iter().filter_map(|case| check(case).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn check_parsed(case: &Parsed<'_>) -> Result<(), String> {
    let reference = Reference::parse(case.input)
        .map_err(|e| format!("{:?}: unexpected error: {e}", case.input))?;
    let actual = (
        reference.domain(),
        reference.path(),
        reference.tag(),
        reference.digest().map(Digest::to_string),
    );
    let expected = (
        case.domain,
        case.path,
        case.tag,
        case.digest.map(str::to_owned),
    );
    if actual != expected {
        return Err(format!(
            "{:?}: got {actual:?}, expected {expected:?}",
            case.input
        ));
    }
    // The normalised form must be a fixed point of parsing.
    let full = reference.to_string();
    match Reference::parse(&full) {
        Ok(reparsed) if reparsed == reference => Ok(()),
        other => Err(format!(
            "{:?}: {full:?} does not parse back: {other:?}",
            case.input
        )),
    }
}

/// `(input, substring of the expected error message)`
fn check_rejected(&(input, message): &(&str, &str)) -> Result<(), String> {
    match Reference::parse(input) {
        Ok(reference) => Err(format!(
            "{input:?}: accepted as {reference}, expected an error"
        )),
        Err(error) if error.to_string().contains(message) => Ok(()),
        Err(error) => Err(format!(
            "{input:?}: error {error:?} does not mention {message:?}"
        )),
    }
}

#[test]
fn valid_references_parse_to_their_components() {
    let long_path = format!("{}a", "a/".repeat(127));
    let long_input = format!("{long_path}:tag-puts-this-over-max");
    let hex64_input = format!("docker.io/{HEX64}");
    let hex64_path = format!("library/{HEX64}");
    let redis_by_digest = format!("redis@{REDIS_DIGEST}");
    let hub_redis_by_digest = format!("docker.io/library/redis@{REDIS_DIGEST}");
    let myapp_by_digest = format!("dmcgowan/myapp@{REDIS_DIGEST}");
    let sha256_colon = REDIS_DIGEST;
    let hex63 = &REDIS_DIGEST["sha256:".len()..REDIS_DIGEST.len() - 1];
    let hex63_path = format!("library/{hex63}");
    let test_repo_digest = format!("test:5000/repo@{SHA256_F}");
    let test_repo_tag_digest = format!("test:5000/repo:tag@{SHA256_F}");
    let punycode_sha512 = format!("xn--7o8h.com/myimage:xn--7o8h.com@{SHA512_F}");
    let ipv6_digest = format!("[2001:db8::1]:5000/repo@{SHA256_F}");
    let ipv6_tag_digest = format!("[2001:db8::1]:5000/repo:tag@{SHA256_F}");
    let busybox =
        "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";

    let hub = "docker.io";
    let cases = [
        // TestValidateReferenceName
        parsed("docker/docker", hub, "docker/docker", None, None),
        parsed("library/debian", hub, "library/debian", None, None),
        parsed("debian", hub, "library/debian", None, None),
        parsed("docker.io/docker/docker", hub, "docker/docker", None, None),
        parsed(
            "docker.io/library/debian",
            hub,
            "library/debian",
            None,
            None,
        ),
        parsed("docker.io/debian", hub, "library/debian", None, None),
        parsed(
            "index.docker.io/docker/docker",
            hub,
            "docker/docker",
            None,
            None,
        ),
        parsed(
            "index.docker.io/library/debian",
            hub,
            "library/debian",
            None,
            None,
        ),
        parsed("index.docker.io/debian", hub, "library/debian", None, None),
        parsed(
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000",
            "docker/docker",
            None,
            None,
        ),
        parsed(
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000",
            "library/debian",
            None,
            None,
        ),
        parsed(
            "127.0.0.1:5000/debian",
            "127.0.0.1:5000",
            "debian",
            None,
            None,
        ),
        // A lone component is never a host, even when it looks like one.
        parsed("192.168.0.1", hub, "library/192.168.0.1", None, None),
        parsed(
            "192.168.0.1:80",
            hub,
            "library/192.168.0.1",
            Some("80"),
            None,
        ),
        parsed(
            "192.168.0.1:8/debian",
            "192.168.0.1:8",
            "debian",
            None,
            None,
        ),
        parsed(
            "192.168.0.2:25000/debian",
            "192.168.0.2:25000",
            "debian",
            None,
            None,
        ),
        parsed(
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            hub,
            "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            None,
            None,
        ),
        parsed(
            "[fc00::1]:5000/docker",
            "[fc00::1]:5000",
            "docker",
            None,
            None,
        ),
        parsed(
            "[fc00::1]:5000/docker/docker",
            "[fc00::1]:5000",
            "docker/docker",
            None,
            None,
        ),
        parsed(
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "[fc00:1:2:3:4:5:6:7]:5000",
            "library/debian",
            None,
            None,
        ),
        // With a domain a hex name is no longer ambiguous with an image ID.
        parsed(&hex64_input, hub, &hex64_path, None, None),
        // An upper-case first component can only be a host name.
        parsed("Docker/docker", "Docker", "docker", None, None),
        parsed("DOCKER/docker", "DOCKER", "docker", None, None),
        parsed(
            "Uppercase/lowercase:tag",
            "Uppercase",
            "lowercase",
            Some("tag"),
            None,
        ),
        // TestValidateRemoteName
        parsed(
            "docker-rules/docker",
            hub,
            "docker-rules/docker",
            None,
            None,
        ),
        parsed(
            "docker---rules/docker",
            hub,
            "docker---rules/docker",
            None,
            None,
        ),
        parsed("doc/docker", hub, "doc/docker", None, None),
        parsed("d/docker", hub, "d/docker", None, None),
        parsed("jess/t", hub, "jess/t", None, None),
        parsed("dock__er/docker", hub, "dock__er/docker", None, None),
        parsed("ab/c.d_e-f__g--h", hub, "ab/c.d_e-f__g--h", None, None),
        // TestNormalizedSplitHostname
        parsed("test.com/foo", "test.com", "foo", None, None),
        parsed("test_com/foo", hub, "test_com/foo", None, None),
        parsed("docker/migrator", hub, "docker/migrator", None, None),
        parsed("test.com:8080/foo", "test.com:8080", "foo", None, None),
        parsed("test-com:8080/foo", "test-com:8080", "foo", None, None),
        parsed("foo", hub, "library/foo", None, None),
        parsed("xn--n3h.com/foo", "xn--n3h.com", "foo", None, None),
        parsed(
            "xn--n3h.com:18080/foo",
            "xn--n3h.com:18080",
            "foo",
            None,
            None,
        ),
        parsed("docker.io/foo", hub, "library/foo", None, None),
        parsed("docker.io/library/foo", hub, "library/foo", None, None),
        parsed(
            "docker.io/library/foo/bar",
            hub,
            "library/foo/bar",
            None,
            None,
        ),
        parsed("localhost/foo", "localhost", "foo", None, None),
        parsed(
            "localhost:5000/a/b:tag",
            "localhost:5000",
            "a/b",
            Some("tag"),
            None,
        ),
        // TestReferenceParse, normalised
        parsed("test_com", hub, "library/test_com", None, None),
        parsed("test.com:tag", hub, "library/test.com", Some("tag"), None),
        parsed("test.com:5000", hub, "library/test.com", Some("5000"), None),
        parsed("test.com/repo:tag", "test.com", "repo", Some("tag"), None),
        parsed("test:5000/repo", "test:5000", "repo", None, None),
        parsed("test:5000/repo:tag", "test:5000", "repo", Some("tag"), None),
        parsed(&test_repo_digest, "test:5000", "repo", None, Some(SHA256_F)),
        parsed(
            &test_repo_tag_digest,
            "test:5000",
            "repo",
            Some("tag"),
            Some(SHA256_F),
        ),
        parsed(
            "lowercase:Uppercase",
            hub,
            "library/lowercase",
            Some("Uppercase"),
            None,
        ),
        parsed(
            &long_input,
            hub,
            &long_path,
            Some("tag-puts-this-over-max"),
            None,
        ),
        parsed(
            "sub-dom1.foo.com/bar/baz/quux",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            None,
            None,
        ),
        parsed(
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            Some("some-long-tag"),
            None,
        ),
        parsed(
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io",
            "test.example.com/my-app",
            Some("test.example.com"),
            None,
        ),
        parsed(
            "xn--n3h.com/myimage:xn--n3h.com",
            "xn--n3h.com",
            "myimage",
            Some("xn--n3h.com"),
            None,
        ),
        parsed(
            &punycode_sha512,
            "xn--7o8h.com",
            "myimage",
            Some("xn--7o8h.com"),
            Some(SHA512_F),
        ),
        parsed(
            "foo_bar.com:8080",
            hub,
            "library/foo_bar.com",
            Some("8080"),
            None,
        ),
        parsed(
            "foo/foo_bar.com:8080",
            hub,
            "foo/foo_bar.com",
            Some("8080"),
            None,
        ),
        parsed("192.168.1.1", hub, "library/192.168.1.1", None, None),
        parsed(
            "192.168.1.1:tag",
            hub,
            "library/192.168.1.1",
            Some("tag"),
            None,
        ),
        parsed(
            "192.168.1.1:5000",
            hub,
            "library/192.168.1.1",
            Some("5000"),
            None,
        ),
        parsed("192.168.1.1/repo", "192.168.1.1", "repo", None, None),
        parsed(
            "192.168.1.1:5000/repo",
            "192.168.1.1:5000",
            "repo",
            None,
            None,
        ),
        parsed(
            "192.168.1.1:5000/repo:5050",
            "192.168.1.1:5000",
            "repo",
            Some("5050"),
            None,
        ),
        parsed("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None),
        parsed(
            "[2001:db8:1:2:3:4:5:6]/repo:tag",
            "[2001:db8:1:2:3:4:5:6]",
            "repo",
            Some("tag"),
            None,
        ),
        parsed(
            "[2001:db8::1]:5000/repo",
            "[2001:db8::1]:5000",
            "repo",
            None,
            None,
        ),
        parsed(
            "[2001:db8::1]:5000/repo:tag",
            "[2001:db8::1]:5000",
            "repo",
            Some("tag"),
            None,
        ),
        parsed(
            &ipv6_digest,
            "[2001:db8::1]:5000",
            "repo",
            None,
            Some(SHA256_F),
        ),
        parsed(
            &ipv6_tag_digest,
            "[2001:db8::1]:5000",
            "repo",
            Some("tag"),
            Some(SHA256_F),
        ),
        parsed(
            "[2001:db8::]:5000/repo",
            "[2001:db8::]:5000",
            "repo",
            None,
            None,
        ),
        parsed("[::1]:5000/repo", "[::1]:5000", "repo", None, None),
        // TestParseAnyReference (name forms)
        parsed("redis", hub, "library/redis", None, None),
        parsed("redis:latest", hub, "library/redis", Some("latest"), None),
        parsed(
            "docker.io/library/redis:latest",
            hub,
            "library/redis",
            Some("latest"),
            None,
        ),
        parsed(
            &redis_by_digest,
            hub,
            "library/redis",
            None,
            Some(REDIS_DIGEST),
        ),
        parsed(
            &hub_redis_by_digest,
            hub,
            "library/redis",
            None,
            Some(REDIS_DIGEST),
        ),
        parsed("dmcgowan/myapp", hub, "dmcgowan/myapp", None, None),
        parsed(
            "dmcgowan/myapp:latest",
            hub,
            "dmcgowan/myapp",
            Some("latest"),
            None,
        ),
        parsed(
            "docker.io/mcgowan/myapp:latest",
            hub,
            "mcgowan/myapp",
            Some("latest"),
            None,
        ),
        parsed(
            &myapp_by_digest,
            hub,
            "dmcgowan/myapp",
            None,
            Some(REDIS_DIGEST),
        ),
        parsed(hex63, hub, &hex63_path, None, None),
        parsed("dbcc1", hub, "library/dbcc1", None, None),
        // As a *name*, "sha256:<hex>" is the repository `sha256` with a hex tag.
        parsed(
            sha256_colon,
            hub,
            "library/sha256",
            Some(&REDIS_DIGEST[7..]),
            None,
        ),
        // TestParseReferenceWithTagAndDigest
        parsed(
            busybox,
            hub,
            "library/busybox",
            Some("latest"),
            Some("sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"),
        ),
        // Tag grammar edges.
        parsed("foo:_", hub, "library/foo", Some("_"), None),
        parsed("foo:1.0-RC_2", hub, "library/foo", Some("1.0-RC_2"), None),
        parsed(
            "example.com/x@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "example.com",
            "x",
            None,
            Some(SHA256_F),
        ),
    ];
    check_all(&cases, check_parsed);
}

#[test]
fn invalid_references_are_rejected_with_a_reason() {
    let too_long = format!("{}a:tag", "a/".repeat(128));
    let long_namespace = "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker";
    let short_digest = "repo@sha256:ffffffffffffffffffffffffffffffffff";
    let bad_algorithm =
        "validname@invaliddigest:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    let long_tag = format!("foo:{}", "t".repeat(129));
    let uppercase_digest =
        "foo@sha256:FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF";

    let cases: Vec<(&str, &str)> = vec![
        // TestValidateReferenceName
        (
            "https://github.com/docker/docker",
            "invalid registry domain \"https:\"",
        ),
        ("docker/Docker", "must be lowercase"),
        (
            "-docker",
            "must start and end with a lowercase letter or digit",
        ),
        ("-docker/docker", "must start and end"),
        (
            "-docker.io/docker/docker",
            "invalid registry domain \"-docker.io\"",
        ),
        ("docker///docker", "empty component"),
        ("docker.io/docker/Docker", "must be lowercase"),
        ("docker.io/docker///docker", "empty component"),
        ("[fc00::1]", "invalid character '['"),
        ("[fc00::1]:5000", "invalid character '['"),
        ("fc00::1:5000/debian", "port \":1:5000\" must be a number"),
        ("[fe80::1%eth0]:5000/debian", "may only contain hex digits"),
        (
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            "may only contain hex digits",
        ),
        (HEX64, "cannot specify 64-byte hexadecimal strings"),
        // TestValidateRemoteName
        ("docker-/docker", "must start and end"),
        ("-docker-/docker", "must start and end"),
        ("____/____", "must start and end"),
        ("_docker/_docker", "must start and end"),
        // A first component with a '.' is taken as a registry domain.
        ("dock..er/docker", "invalid registry domain \"dock..er\""),
        ("dock_.er/docker", "invalid registry domain \"dock_.er\""),
        ("dock-.er/docker", "invalid registry domain \"dock-.er\""),
        ("docker/dock..er", "invalid separator \"..\""),
        ("docker/dock_.er", "invalid separator \"_.\""),
        ("docker/dock-.er", "invalid separator \"-.\""),
        ("dock___er/docker", "invalid separator \"___\""),
        ("docker/", "empty component"),
        (long_namespace, "must not be more than 255 characters"),
        // TestReferenceParse
        ("", "at least one component"),
        (":justtag", "empty component"),
        (
            "@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "empty component",
        ),
        (short_digest, "has 64 hex characters, found 34"),
        (bad_algorithm, "unsupported algorithm \"invaliddigest\""),
        (
            "Uppercase:tag",
            "repository name \"library/Uppercase\" must be lowercase",
        ),
        ("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
        (
            &too_long,
            "must not be more than 255 characters (it has 257)",
        ),
        ("aa/asdf$$^/aa", "invalid character '$'"),
        ("[2001:db8::1]", "invalid character '['"),
        ("[2001:db8::1]:5000", "invalid character '['"),
        ("[2001:db8::1]:tag", "invalid character '['"),
        ("[fe80::1%eth0]:5000/repo", "may only contain hex digits"),
        (
            "[fe80::1%@invalidzone]:5000/repo",
            "may only contain hex digits",
        ),
        // TestInvalidReferenceComponents
        ("-foo", "must start and end"),
        // Tag grammar.
        ("foo:", "tag is empty"),
        ("foo:-tag", "must start with a letter, digit or '_'"),
        ("foo:.tag", "must start with a letter, digit or '_'"),
        ("foo:a:b", "invalid character ':'"),
        ("foo:a+b", "invalid character '+'"),
        (&long_tag, "must not be more than 128 characters"),
        // Digest grammar.
        ("foo@", "expected \"<algorithm>:<hex>\""),
        ("foo@sha256", "expected \"<algorithm>:<hex>\""),
        (uppercase_digest, "must be lowercase"),
        (
            "foo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "found 66",
        ),
        // Domain grammar.
        // Docker accepts these as domain-less names ("a_b.c/foo" is a valid
        // path); a reference without a registry is useless here, so we reject.
        ("a_b.c/foo", "invalid registry domain \"a_b.c\""),
        ("a.b_c-d/e", "invalid registry domain \"a.b_c-d\""),
        ("example.com:/foo", "port \"\" must be a number"),
        ("exa..mple.com/foo", "host name component \"\""),
        ("[::1/foo", "invalid registry domain"),
        ("[]:5000/foo", "may only contain hex digits"),
        // Whitespace and other stray characters.
        (" nginx", "invalid character ' '"),
        ("nginx ", "invalid character ' '"),
        ("ngi nx:1", "invalid character ' '"),
        ("/nginx", "empty component"),
        ("nginx/", "empty component"),
        ("naïve", "invalid character 'ï'"),
    ];
    check_all(&cases, check_rejected);
}

#[test]
fn errors_quote_the_input() {
    let error = Reference::parse("docker/Docker:1").unwrap_err();
    assert_eq!(
        error,
        ReferenceError::Uppercase {
            input: "docker/Docker:1".into(),
            repository: "docker/Docker".into()
        }
    );
    assert!(error.to_string().contains("\"docker/Docker:1\""), "{error}");

    let error = Reference::parse(HEX64).unwrap_err();
    assert!(matches!(error, ReferenceError::AmbiguousIdentifier { .. }));
    assert!(error.to_string().contains(HEX64));
}

/// TestParseRepositoryInfo: every spelling maps to the same normalised name,
/// and back to the same familiar name.
#[test]
fn familiar_and_full_names() {
    // (spellings, familiar name, full name, domain, path)
    let cases: &[(&[&str], &str, &str, &str, &str)] = &[
        (
            &["fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar"],
            "fooo/bar",
            "docker.io/fooo/bar",
            "docker.io",
            "fooo/bar",
        ),
        (
            &["ubuntu", "docker.io/library/ubuntu", "library/ubuntu"],
            "ubuntu",
            "docker.io/library/ubuntu",
            "docker.io",
            "library/ubuntu",
        ),
        (
            &["nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu"],
            "nonlibrary/ubuntu",
            "docker.io/nonlibrary/ubuntu",
            "docker.io",
            "nonlibrary/ubuntu",
        ),
        (
            &["other/library", "docker.io/other/library"],
            "other/library",
            "docker.io/other/library",
            "docker.io",
            "other/library",
        ),
        (
            &["127.0.0.1:8000/private/moonbase"],
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000",
            "private/moonbase",
        ),
        (
            &["127.0.0.1:8000/privatebase"],
            "127.0.0.1:8000/privatebase",
            "127.0.0.1:8000/privatebase",
            "127.0.0.1:8000",
            "privatebase",
        ),
        (
            &["example.com/private/moonbase"],
            "example.com/private/moonbase",
            "example.com/private/moonbase",
            "example.com",
            "private/moonbase",
        ),
        (
            &["example.com/privatebase"],
            "example.com/privatebase",
            "example.com/privatebase",
            "example.com",
            "privatebase",
        ),
        (
            &["example.com:8000/private/moonbase"],
            "example.com:8000/private/moonbase",
            "example.com:8000/private/moonbase",
            "example.com:8000",
            "private/moonbase",
        ),
        (
            &["example.com:8000/privatebasee"],
            "example.com:8000/privatebasee",
            "example.com:8000/privatebasee",
            "example.com:8000",
            "privatebasee",
        ),
        (
            &[
                "ubuntu-12.04-base",
                "docker.io/library/ubuntu-12.04-base",
                "index.docker.io/library/ubuntu-12.04-base",
            ],
            "ubuntu-12.04-base",
            "docker.io/library/ubuntu-12.04-base",
            "docker.io",
            "library/ubuntu-12.04-base",
        ),
        (
            &["foo", "docker.io/library/foo", "docker.io/foo"],
            "foo",
            "docker.io/library/foo",
            "docker.io",
            "library/foo",
        ),
        (
            &["library/foo/bar", "docker.io/library/foo/bar"],
            "library/foo/bar",
            "docker.io/library/foo/bar",
            "docker.io",
            "library/foo/bar",
        ),
        (
            &["store/foo/bar", "docker.io/store/foo/bar"],
            "store/foo/bar",
            "docker.io/store/foo/bar",
            "docker.io",
            "store/foo/bar",
        ),
        (&["Foo/bar"], "Foo/bar", "Foo/bar", "Foo", "bar"),
        (&["FOO/bar"], "FOO/bar", "FOO/bar", "FOO", "bar"),
        (
            &["localhost:5000/a"],
            "localhost:5000/a",
            "localhost:5000/a",
            "localhost:5000",
            "a",
        ),
        (
            &["user/repo"],
            "user/repo",
            "docker.io/user/repo",
            "docker.io",
            "user/repo",
        ),
    ];
    let spellings: Vec<_> = cases
        .iter()
        .flat_map(|(spellings, familiar, full, domain, path)| {
            spellings
                .iter()
                .map(move |spelling| (*spelling, *familiar, *full, *domain, *path))
        })
        .collect();
    check_all(&spellings, |&(spelling, familiar, full, domain, path)| {
        let reference = Reference::parse(spelling).map_err(|e| format!("{spelling:?}: {e}"))?;
        let actual = (
            reference.familiar_name(),
            reference.name(),
            reference.to_string(),
            reference.domain(),
            reference.path(),
        );
        let expected = (
            familiar.to_owned(),
            full.to_owned(),
            full.to_owned(),
            domain,
            path,
        );
        if actual != expected {
            return Err(format!(
                "{spelling:?}: got {actual:?}, expected {expected:?}"
            ));
        }
        let refamiliarised =
            Reference::parse(familiar).map_err(|e| format!("{familiar:?}: {e}"))?;
        if refamiliarised != reference {
            return Err(format!(
                "{spelling:?}: familiar {familiar:?} parses to {refamiliarised}"
            ));
        }
        Ok(())
    });
}

#[test]
fn familiar_string_and_display() {
    let digest = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
    // (input, familiar string, full string)
    let cases = [
        (
            "nginx".to_owned(),
            "nginx".to_owned(),
            "docker.io/library/nginx".to_owned(),
        ),
        (
            "nginx:latest".to_owned(),
            "nginx:latest".to_owned(),
            "docker.io/library/nginx:latest".to_owned(),
        ),
        (
            format!("nginx@{digest}"),
            format!("nginx@{digest}"),
            format!("docker.io/library/nginx@{digest}"),
        ),
        (
            format!("nginx:1@{digest}"),
            format!("nginx:1@{digest}"),
            format!("docker.io/library/nginx:1@{digest}"),
        ),
        (
            format!("busybox:latest@{digest}"),
            format!("busybox:latest@{digest}"),
            format!("docker.io/library/busybox:latest@{digest}"),
        ),
        (
            "index.docker.io/user/app:v2".to_owned(),
            "user/app:v2".to_owned(),
            "docker.io/user/app:v2".to_owned(),
        ),
        (
            "localhost:5000/a/b:tag".to_owned(),
            "localhost:5000/a/b:tag".to_owned(),
            "localhost:5000/a/b:tag".to_owned(),
        ),
        (
            "docker.io/library/foo/bar:x".to_owned(),
            "library/foo/bar:x".to_owned(),
            "docker.io/library/foo/bar:x".to_owned(),
        ),
    ];
    check_all(&cases, |(input, familiar, full)| {
        let reference = Reference::parse(input).map_err(|e| format!("{input:?}: {e}"))?;
        let actual = (reference.familiar_string(), reference.to_string());
        if actual != (familiar.clone(), full.clone()) {
            return Err(format!(
                "{input:?}: got {actual:?}, expected {:?}",
                (familiar, full)
            ));
        }
        Ok(())
    });
}

/// TestParseDockerRef plus `TagNameOnly`.
#[test]
fn default_tag_and_docker_ref() {
    let digest = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";
    // (input, with_default_tag, docker_ref)
    let cases = [
        (
            "busybox".to_owned(),
            "docker.io/library/busybox:latest".to_owned(),
            "docker.io/library/busybox:latest".to_owned(),
        ),
        (
            "busybox:latest".to_owned(),
            "docker.io/library/busybox:latest".to_owned(),
            "docker.io/library/busybox:latest".to_owned(),
        ),
        (
            "busybox:1.36".to_owned(),
            "docker.io/library/busybox:1.36".to_owned(),
            "docker.io/library/busybox:1.36".to_owned(),
        ),
        (
            format!("busybox@{digest}"),
            format!("docker.io/library/busybox@{digest}"),
            format!("docker.io/library/busybox@{digest}"),
        ),
        (
            "library/busybox".to_owned(),
            "docker.io/library/busybox:latest".to_owned(),
            "docker.io/library/busybox:latest".to_owned(),
        ),
        (
            "docker.io/busybox".to_owned(),
            "docker.io/library/busybox:latest".to_owned(),
            "docker.io/library/busybox:latest".to_owned(),
        ),
        (
            "docker.io/library/busybox".to_owned(),
            "docker.io/library/busybox:latest".to_owned(),
            "docker.io/library/busybox:latest".to_owned(),
        ),
        (
            "gcr.io/library/busybox".to_owned(),
            "gcr.io/library/busybox:latest".to_owned(),
            "gcr.io/library/busybox:latest".to_owned(),
        ),
        (
            format!("gcr.io/library/busybox:latest@{digest}"),
            format!("gcr.io/library/busybox:latest@{digest}"),
            format!("gcr.io/library/busybox@{digest}"),
        ),
    ];
    check_all(&cases, |(input, defaulted, docker_ref)| {
        let reference = Reference::parse(input).map_err(|e| format!("{input:?}: {e}"))?;
        let actual = (
            reference.clone().with_default_tag().to_string(),
            reference.docker_ref().to_string(),
        );
        if actual != (defaulted.clone(), docker_ref.clone()) {
            return Err(format!(
                "{input:?}: got {actual:?}, expected {:?}",
                (defaulted, docker_ref)
            ));
        }
        Ok(())
    });
}

/// TestWithTag / TestWithDigest / TestInvalidReferenceComponents.
#[test]
fn replacing_tag_and_digest() {
    let digest: Digest = REDIS_DIGEST.parse().unwrap();
    let foo = Reference::parse("test.com:8000/foo").unwrap();

    assert_eq!(
        foo.with_tag("TAG5").unwrap().to_string(),
        "test.com:8000/foo:TAG5"
    );
    assert_eq!(
        foo.with_digest(digest.clone())
            .with_tag("TAG5")
            .unwrap()
            .to_string(),
        format!("test.com:8000/foo:TAG5@{REDIS_DIGEST}")
    );
    let both = foo.with_tag("tag").unwrap().with_digest(digest.clone());
    assert_eq!(
        both.to_string(),
        format!("test.com:8000/foo:tag@{REDIS_DIGEST}")
    );
    assert_eq!(both.without_digest().to_string(), "test.com:8000/foo:tag");
    assert_eq!(
        both.without_tag().to_string(),
        format!("test.com:8000/foo@{REDIS_DIGEST}")
    );
    assert_eq!(both.repository(), foo);
    assert!(foo.is_name_only() && !both.is_name_only());
    // A digest-only reference gets no default tag.
    assert_eq!(both.without_tag().with_default_tag().tag(), None);

    let busybox = Reference::parse("busybox").unwrap();
    for bad_tag in ["-foo", "", ".x", "a/b", &"x".repeat(129)] {
        let error = busybox.with_tag(bad_tag).unwrap_err();
        assert!(
            matches!(error, ReferenceError::InvalidTag { .. }),
            "{bad_tag:?}: {error}"
        );
    }
    assert!(busybox.with_tag(&"x".repeat(128)).is_ok());
}

#[test]
fn serde_round_trip_as_string() {
    let reference = Reference::parse(&format!("localhost:5000/a/b:tag@{REDIS_DIGEST}")).unwrap();
    let json = serde_json::to_string(&reference).unwrap();
    assert_eq!(json, format!("\"localhost:5000/a/b:tag@{REDIS_DIGEST}\""));
    assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), reference);

    let familiar: Reference = serde_json::from_str("\"nginx\"").unwrap();
    assert_eq!(familiar.to_string(), "docker.io/library/nginx");
    let error = serde_json::from_str::<Reference>("\"Nginx\"").unwrap_err();
    assert!(error.to_string().contains("must be lowercase"), "{error}");
}

#[test]
fn from_str_matches_parse() {
    let parsed: Reference = "nginx:1.25".parse().unwrap();
    assert_eq!(
        parsed,
        Reference::parse("docker.io/library/nginx:1.25").unwrap()
    );
    assert_eq!(Reference::try_from("nginx:1.25").unwrap(), parsed);
}

/// Parsing arbitrary strings must never panic, and whatever is accepted must
/// survive a Display/parse round trip.
#[test]
fn arbitrary_input_never_panics() {
    const ALPHABET: &[&str] = &[
        "a",
        "Z",
        "0",
        "9",
        ".",
        "_",
        "-",
        "/",
        ":",
        "@",
        "[",
        "]",
        "%",
        " ",
        "é",
        "sha256",
        "localhost",
        "docker.io",
        "library",
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ];
    // A small deterministic generator keeps the test reproducible without extra crates.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let length = (next() % 12) as usize;
        let input: String = (0..length)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect();
        if let Ok(reference) = Reference::parse(&input) {
            let full = reference.to_string();
            assert_eq!(
                Reference::parse(&full).as_ref(),
                Ok(&reference),
                "{input:?} -> {full:?}"
            );
            let familiar = reference.familiar_string();
            // Like Docker, `docker.io/library/<64 hex>` familiarises to a bare
            // hex string, which is then refused as an image ID.
            let familiar_is_image_id =
                familiar.len() == 64 && familiar.bytes().all(|b| b.is_ascii_hexdigit());
            if familiar_is_image_id {
                assert!(matches!(
                    Reference::parse(&familiar),
                    Err(ReferenceError::AmbiguousIdentifier { .. })
                ));
                continue;
            }
            assert_eq!(
                Reference::parse(&familiar).as_ref(),
                Ok(&reference),
                "{input:?} -> {familiar:?}"
            );
        }
    }
}
