//! Shell-lexer vectors in the style of BuildKit's `envVarTest`/`wordsTest`.

use strata_dockerfile::shell::{self, ExpandOptions};

const ENV: [(&str, &str); 4] = [
    ("PWD", "/home"),
    ("SHELL", "bash"),
    ("KOREAN", "한국어"),
    ("NULL", ""),
];

/// `expected == "error"` means substitution must fail.
fn check(input: &str, expected: &str) -> Option<String> {
    let got = shell::expand(input, &ENV, '\\');
    match (got, expected) {
        (Err(_), "error") => None,
        (Ok(v), e) if v == e => None,
        (g, e) => Some(format!("{input:?}: expected {e:?}, got {g:?}")),
    }
}

#[test]
fn expand_vectors() {
    let cases: &[(&str, &str)] = &[
        ("hello", "hello"),
        ("he'll'o", "hello"),
        ("he'llo", "error"),
        ("he\\'llo", "he'llo"),
        ("he\\\\'llo", "error"),
        ("abc\\tdef", "abctdef"),
        ("\"abc\\tdef\"", "abc\\tdef"),
        ("\"abc\\\\tdef\"", "abc\\tdef"),
        ("'abc\\tdef'", "abc\\tdef"),
        ("hello\\", "hello"),
        ("hello\\\\", "hello\\"),
        ("\"hello", "error"),
        ("\"hello\\\"", "error"),
        ("\"hel'lo\"", "hel'lo"),
        ("'hello", "error"),
        ("'hello\\'", "hello\\"),
        ("'hello\\there'", "hello\\there"),
        ("'hello\\\\there'", "hello\\\\there"),
        ("\"''\"", "''"),
        ("$.", "$."),
        ("he$1x", "hex"),
        ("he$.x", "he$.x"),
        ("he$pwd.", "he."),
        ("he$PWD", "he/home"),
        ("he\\$PWD", "he$PWD"),
        ("he\\\\$PWD", "he\\/home"),
        ("\"he\\$PWD\"", "he$PWD"),
        ("\"he\\\\$PWD\"", "he\\/home"),
        ("\\${}", "${}"),
        ("\\${}aaa", "${}aaa"),
        ("he\\${}", "he${}"),
        ("he\\${}xx", "he${}xx"),
        ("${}", "error"),
        ("${}aaa", "error"),
        ("he${}", "error"),
        ("he${}xx", "error"),
        ("he${hi}", "he"),
        ("he${hi}xx", "hexx"),
        ("he${PWD}", "he/home"),
        ("he${.}", "error"),
        ("he${XXX:-000}xx", "he000xx"),
        ("he${PWD:-000}xx", "he/homexx"),
        ("he${XXX:-$PWD}xx", "he/homexx"),
        ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
        ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
        ("he${XXX:YYY}", "error"),
        ("he${XXX?}", "error"),
        ("he${XXX:?}", "error"),
        ("he${PWD?}", "he/home"),
        ("he${PWD:?}", "he/home"),
        ("he${NULL?}", "he"),
        ("he${NULL:?}", "error"),
        ("he${XXX:+${PWD}}xx", "hexx"),
        ("he${PWD:+${XXX}}xx", "hexx"),
        ("he${PWD:+${SHELL}}xx", "hebashxx"),
        ("he${XXX:+000}xx", "hexx"),
        ("he${PWD:+000}xx", "he000xx"),
        ("'he${XX}'", "he${XX}"),
        ("\"he${PWD}\"", "he/home"),
        ("\"he'$PWD'\"", "he'/home'"),
        ("\"$PWD\"", "/home"),
        ("'$PWD'", "$PWD"),
        ("'\\$PWD'", "\\$PWD"),
        ("'\"hello\"'", "\"hello\""),
        ("'he\\$PWD'", "he\\$PWD"),
        ("he${PWD", "error"),
        ("he${PWD:=000}xx", "error"),
        ("he${PWD:+${PWD}:}xx", "he/home:xx"),
        ("he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
        ("he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"),
        ("안녕하세요", "안녕하세요"),
        ("안'녕'하세요", "안녕하세요"),
        ("안'녕하세요", "error"),
        ("안녕\\'하세요", "안녕'하세요"),
        ("안녕\\t하세요", "안녕t하세요"),
        ("\"안녕\\t하세요\"", "안녕\\t하세요"),
        ("안녕$PWD", "안녕/home"),
        ("안녕${XXX:-${YYY:-yyy}}xx", "안녕yyyxx"),
        ("$KOREAN", "한국어"),
        ("안녕$KOREAN", "안녕한국어"),
        ("${{aaa}", "error"),
        ("${aaa}}", "}"),
        ("${aaa", "error"),
        ("${{aaa", "error"),
        ("${{aaa}}", "error"),
        ("${aaa}}}", "}}"),
        ("${aaa:-bbb}}", "bbb}"),
        ("${aaa:-bbb}}}", "bbb}}"),
        ("${aaa-bbb}", "bbb"),
        ("${NULL-bbb}", ""),
        ("${NULL:-bbb}", "bbb"),
        ("${NULL+bbb}", "bbb"),
        ("${NULL:+bbb}", ""),
        ("${aaa+bbb}", ""),
        ("${XXX:?must be set}", "error"),
        ("$", "$"),
        ("a $ b", "a $ b"),
        ("$PWD$SHELL", "/homebash"),
        ("${PWD}${SHELL}", "/homebash"),
        ("\"${PWD} ${SHELL}\"", "/home bash"),
        ("a  b", "a  b"),
        ("${PWD#/}", "home"),
        ("${PWD#*o}", "me"),
        ("${PWD##*o}", "me"),
        ("${PWD%e}", "/hom"),
        ("${PWD%%o*}", "/h"),
        ("${PWD%o*}", "/h"),
        ("${SHELL#?}", "ash"),
        ("${SHELL#x}", "bash"),
        ("${SHELL/a/A}", "bAsh"),
        ("${SHELL//[a]/A}", "bash"),
        ("${SHELL/?/X}", "Xash"),
        ("${SHELL//?/X}", "XXXX"),
        ("${SHELL/sh/}", "ba"),
        ("${SHELL/a}", "error"),
        ("${SHELL//}", "error"),
        ("${SHELL///}", "bash"),
        ("${XXX/a/b}", ""),
        ("${SHELL#'b'}", "ash"),
        ("${SHELL#\"b\"a}", "sh"),
        ("${SHELL#$NULL}", "bash"),
        ("${SHELL%$NULL}", "bash"),
        ("${SHELL:-'a b'}", "bash"),
        ("${XXX:-'a b'}", "a b"),
        ("${XXX:-\"$PWD x\"}", "/home x"),
        ("$@", ""),
        ("$0", ""),
        ("$12x", "x"),
        ("x\\ y", "x y"),
        ("\"\\\"\"", "\""),
        ("\"a\\b\"", "a\\b"),
        ("\"\\$\"", "$"),
    ];
    let failures: Vec<String> = cases.iter().filter_map(|(i, e)| check(i, e)).collect();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn pattern_vectors() {
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );
    let cases: &[Case] = &[
        (
            &[("FOO", "()[]{}^$.*?|\\x")],
            "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
            "x",
        ),
        (&[("FOO", "xx**")], "${FOO%%\\**}", "xx"),
        (&[("FOO", "xxyy")], "${FOO#*x*y}", "y"),
        (&[("FOO", "xxyy")], "${FOO#*}", "xxyy"),
        (&[("FOO", "xxyy"), ("BAR", "x")], "${FOO#$BAR}", "xyy"),
        (&[("FOO", "xxyy"), ("BAR", "")], "${FOO#$BAR}", "xxyy"),
        (&[("FOO", "xxyy")], "${FOO#}", "xxyy"),
        (&[("FOO", "xxyy")], "${FOO##*x}", "yy"),
        (&[("FOO", "xxyy")], "${FOO##}", "xxyy"),
        (&[("FOO", "???y")], "${FOO#?\\?}", "?y"),
        (&[("FOO", "xxyy")], "${ABC:-.}${FOO%x}${ABC:-.}", ".xxyy."),
        (&[("FOO", "a***yy*")], "${FOO%%\\**\\*}", "a"),
        (&[("FOO", "xxyy")], "${FOO%}", "xxyy"),
        (
            &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            "/foo.*/*.txt - /foo..*.txt",
        ),
        (
            &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            "/tmp/bar.txt - /bar.txt",
        ),
        (
            &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("R", "/")],
            "${FOO/$NEEDLE/$R} - ${FOO//$NEEDLE/$R}",
            "/foo/b/c.txt - /foo/c.txt",
        ),
        (
            &[
                ("FOO", "http://google.de"),
                ("N", "http://"),
                ("R", "https://"),
            ],
            "${FOO/$N/$R}",
            "https://google.de",
        ),
        (
            &[("FOO", "/tmp/foo.txt")],
            "${FOO//\\//\\/}",
            "\\/tmp\\/foo.txt",
        ),
        (&[("FOO", "xxyy"), ("BAR", "")], "${FOO/$BAR/ww}", "wwxxyy"),
        (
            &[
                ("VERSION", "v1.2.3"),
                ("TARGETOS", "linux"),
                ("TARGETARCH", "arm"),
                ("TARGETVARIANT", "v7"),
            ],
            "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
            "something-v1.2.3.linux-arm-v7.tar.gz",
        ),
        (
            &[
                ("VERSION", "v1.2.3"),
                ("TARGETOS", "linux"),
                ("TARGETARCH", "amd64"),
            ],
            "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
            "something-v1.2.3.linux-amd64.tar.gz",
        ),
        (
            &[("FOO", "xxx"), ("BAR", "")],
            "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
            "xxx  ccc",
        ),
        (
            &[("FOO", "xxx"), ("BAR", "")],
            "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
            "xxx bbb ccc",
        ),
        (
            &[("FOO", "xxx"), ("BAR", "")],
            "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
            "aaa bbb ",
        ),
        (
            &[("FOO", "xxx"), ("BAR", "")],
            "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
            "aaa  ",
        ),
        (&[("BAR", "")], "${BAR?bbb}", ""),
        (&[("FOO", "ab"), ("E", "")], "${FOO//$E/x}", "xaxbx"),
        (&[("FOO", "ab"), ("E", "")], "${FOO/$E/x}", "xab"),
        (&[("FOO", "aXbXc")], "${FOO//X/}", "abc"),
        (&[("FOO", "aXbXc")], "${FOO//*/z}", "z"),
        (&[("FOO", "bash")], "${FOO:#b}", "ash"),
        (&[("FOO", "bash")], "${FOO:%%a*}", "b"),
        // As in BuildKit, quotes do not make pattern characters literal.
        (&[("FOO", "a*b")], "${FOO#'a*'}", "*b"),
        (&[("FOO", "a/b}c")], "${FOO#a\\/b\\}}", "c"),
        (&[("FOO", "a/b")], "${FOO/\\//-}", "a-b"),
    ];
    let mut failures = Vec::new();
    for (env, input, expected) in cases {
        match shell::expand(input, *env, '\\') {
            Ok(v) if v == *expected => {}
            other => failures.push(format!("{input:?}: expected {expected:?}, got {other:?}")),
        }
    }
    for (env, input) in [
        (&[("FOO", "x")][..], "${FOO=aaa}"),
        (&[][..], "${FOO=}"),
        (&[("FOO", "")][..], "${FOO:?}"),
        (&[][..], "${BAZ?ccc}"),
        (&[("FOO", "x")][..], "${FOO//ww}"),
        (&[("FOO", "x")][..], "${FOO#\\x}"),
        (&[("FOO", "x"), ("P", "a\\")][..], "${FOO#$P}"),
        (&[("FOO", "x")][..], "${FOO/x}"),
    ] {
        if shell::expand(input, env, '\\').is_ok() {
            failures.push(format!("{input:?}: expected an error"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mandatory_message() {
    let env = [("ARG", "x")];
    let e = shell::expand("${VAR:?message here$ARG}", &env, '\\').unwrap_err();
    assert_eq!(
        e.0,
        "failed to process \"${VAR:?message here$ARG}\": VAR: message herex"
    );
    let env = [("VAR", ""), ("ARG", "x")];
    assert_eq!(
        shell::expand("${VAR?message here$ARG}", &env, '\\').unwrap(),
        ""
    );
}

#[test]
fn words_vectors() {
    let env = [
        ("hi", "hi"),
        ("space", "abc  def"),
        ("leading", "  ab c"),
        ("trailing", "ab c   "),
    ];
    let cases: &[(&str, &str)] = &[
        ("hello", "hello"),
        ("hello${hi}bye", "hellohibye"),
        ("hello${space}bye", "helloabc,defbye"),
        ("hello\"${space}\"bye", "helloabc  defbye"),
        ("hello \"${space}\"bye", "hello,abc  defbye"),
        ("hello${leading}def", "hello,ab,cdef"),
        ("hello\"${leading}\" def", "hello  ab c,def"),
        ("hello\"${leading}\"", "hello  ab c"),
        ("hello${leading}", "hello,ab,c"),
        ("hello${trailing}", "helloab,c"),
        ("hello${trailing}d", "helloab,c,d"),
        ("hello\"${trailing}\"d", "helloab c   d"),
        ("hel\"lo${trailing}\"", "helloab c   "),
        ("hello\" there  \"", "hello there  "),
        ("hello there     ", "hello,there"),
        ("hello\\ there", "hello there"),
        ("hello\" there", "error"),
        ("hello\\\" there", "hello\",there"),
        ("hello\"\\\\there\"", "hello\\there"),
        ("hello\"\\there\"", "hello\\there"),
        ("hello'\\\\there'", "hello\\\\there"),
        ("hello'\\there'", "hello\\there"),
        ("hello'$there'", "hello$there"),
        ("${nope:-a b} c", "a,b,c"),
        ("  a   b  ", "a,b"),
        ("a \"\" b ''", "a,b"),
        ("\"\"", ""),
    ];
    let mut failures = Vec::new();
    for (input, expected) in cases {
        let got = match shell::split_words(input, &env, '\\') {
            Ok(w) => w.join(","),
            Err(_) => "error".to_string(),
        };
        if got != *expected {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn backtick_escape() {
    let env = [("X", "1")];
    assert_eq!(shell::expand("a`$X", &env, '`').unwrap(), "a$X");
    assert_eq!(
        shell::expand("c:\\dir\\$X", &env, '`').unwrap(),
        "c:\\dir\\1"
    );
    assert_eq!(shell::expand("\"a`\"b\"", &env, '`').unwrap(), "a\"b");
    assert_eq!(
        shell::split_words("a` b c", &env, '`').unwrap(),
        ["a b", "c"]
    );
}

#[test]
fn raw_options_and_matches() {
    let env = [("A", "1")];
    let raw = ExpandOptions {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: false,
    };
    let e = shell::expand_with("echo \"$A\" '$A' \\$A $B ${C:-x}", &env, '\\', raw).unwrap();
    assert_eq!(e.value, "echo \"1\" '$A' \\$A  x");
    assert_eq!(e.matched.into_iter().collect::<Vec<_>>(), ["A"]);
    assert_eq!(e.unmatched.into_iter().collect::<Vec<_>>(), ["B"]);
    let skip = ExpandOptions {
        skip_unset: true,
        ..Default::default()
    };
    let e = shell::expand_with("$A-$B-${C}", &env, '\\', skip).unwrap();
    assert_eq!(e.value, "1-$B-${C}");
}
