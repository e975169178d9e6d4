//! Data-driven checks of template output against what Go's text/template
//! (with Docker's function set) prints for the same template and JSON data.

use serde_json::{Value, json};
use strata_gotmpl::{Template, TemplateError, render_list};

/// A trimmed-down `docker image inspect` object. Label keys are deliberately
/// not in sorted order: printing and ranging must sort, `json` must not.
const IMAGE: &str = r#"{
    "Id": "sha256:abcdef123456",
    "Repository": "alpine",
    "Tag": "3.20",
    "RepoTags": ["alpine:3.20", "alpine:latest"],
    "Os": "linux",
    "Architecture": "amd64",
    "Size": 7800000,
    "Ratio": 1.5,
    "Big": 1000000.0,
    "Zero": 0,
    "Empty": "",
    "Nothing": null,
    "Flags": {"on": true, "off": false},
    "Config": {
        "Env": ["PATH=/usr/bin", "A=<b>&c"],
        "Cmd": ["sh", "-c", "x"],
        "Entrypoint": null,
        "Labels": {"z": "last", "a.b": "1", "maintainer": "me"},
        "ExposedPorts": {"80/tcp": {}}
    },
    "Nested": [{"Name": "a", "N": 1}, {"Name": "b", "N": 2}]
}"#;

const NONE: &str = "{}";

fn data(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("bad test data {json}: {e}"))
}

fn check(template: &str, data_json: &str, expected: &str) {
    let parsed = Template::parse(template).unwrap_or_else(|e| panic!("parse {template:?}: {e}"));
    let out = parsed
        .execute(&data(data_json))
        .unwrap_or_else(|e| panic!("execute {template:?}: {e}"));
    assert_eq!(out, expected, "template {template:?}");
}

const CASES: &[(&str, &str, &str)] = &[
    // Text, fields and Go's value printing.
    ("plain text", NONE, "plain text"),
    ("{{.Repository}}:{{.Tag}}", IMAGE, "alpine:3.20"),
    ("{{.}}", r#""str""#, "str"),
    ("{{.missing}}", IMAGE, "<no value>"),
    ("{{.Nothing}}", IMAGE, "<no value>"),
    ("{{.Missing.Deeper}}", IMAGE, "<no value>"),
    ("{{.Config.Entrypoint}}", IMAGE, "<no value>"),
    ("{{.}}", "null", "<no value>"),
    ("{{.Config.Cmd}}", IMAGE, "[sh -c x]"),
    (
        "{{.Config.Labels}}",
        IMAGE,
        "map[a.b:1 maintainer:me z:last]",
    ),
    ("{{.Config.Labels.maintainer}}", IMAGE, "me"),
    (
        "{{.Size}} {{.Ratio}} {{.Big}} {{.Zero}}",
        IMAGE,
        "7800000 1.5 1e+06 0",
    ),
    ("{{.Flags.on}} {{.Flags.off}}", IMAGE, "true false"),
    ("{{.Nested}}", IMAGE, "[map[N:1 Name:a] map[N:2 Name:b]]"),
    (
        "{{.}}",
        r#"[1, null, {"k": [true]}, 1.0, 2.5, 1e21, 100000000]"#,
        "[1 <nil> map[k:[true]] 1 2.5 1e+21 100000000]",
    ),
    // Docker's json: compact, no HTML escaping, keys in the data's order.
    (
        "{{json .}}",
        r#"{"b": 1, "a": "<x>&"}"#,
        r#"{"b":1,"a":"<x>&"}"#,
    ),
    (
        "{{json .Config.Env}}",
        IMAGE,
        r#"["PATH=/usr/bin","A=<b>&c"]"#,
    ),
    (
        "{{json .Config.Labels}}",
        IMAGE,
        r#"{"z":"last","a.b":"1","maintainer":"me"}"#,
    ),
    (
        "{{json .Nothing}} {{json .Ratio}} {{json .Big}} {{json .missing}}",
        IMAGE,
        "null 1.5 1000000 null",
    ),
    // index and slice.
    (r#"{{index .Config.Labels "a.b"}}"#, IMAGE, "1"),
    (r#"{{index .Config.Labels "nope"}}"#, IMAGE, "<no value>"),
    ("{{index .RepoTags 1}}", IMAGE, "alpine:latest"),
    (r#"{{index .Nested 1 "Name"}}"#, IMAGE, "b"),
    ("{{(index .Nested 0).Name}}", IMAGE, "a"),
    (
        "{{slice .Repository 1 3}} {{slice .RepoTags 1}} {{len (slice .RepoTags 0 1)}}",
        IMAGE,
        "lp [alpine:latest] 1",
    ),
    // Conditionals and comparisons.
    (r#"{{if eq .Os "linux"}}y{{end}}"#, IMAGE, "y"),
    (
        r#"{{if eq .Os "windows" "linux"}}multi{{end}}"#,
        IMAGE,
        "multi",
    ),
    (
        r#"{{if ne .Os "linux"}}a{{else if eq .Architecture "amd64"}}b{{else}}c{{end}}"#,
        IMAGE,
        "b",
    ),
    (
        "{{if false}}a{{else if false}}b{{else if true}}c{{else}}d{{end}}",
        NONE,
        "c",
    ),
    ("{{if .Empty}}a{{else}}b{{end}}", IMAGE, "b"),
    (
        "{{if .Zero}}a{{end}}{{if .RepoTags}}c{{end}}{{if .Nothing}}d{{end}}{{if .Flags}}e{{end}}",
        IMAGE,
        "ce",
    ),
    ("{{if eq .Nothing nil}}nil{{end}}", IMAGE, "nil"),
    (
        r#"{{if and (eq .Os "linux") (gt .Size 1000)}}big linux{{end}}"#,
        IMAGE,
        "big linux",
    ),
    (
        r#"{{lt 1 2}} {{le 2 2}} {{gt 1.5 2}} {{ge "b" "a"}} {{eq .Size 7800000}} {{eq 1 1.0}}"#,
        IMAGE,
        "true true false true true true",
    ),
    (
        "{{and .Os .Empty}}|{{or .Empty .Zero .Os}}|{{and 1 2}}|{{or 0 \"\"}}",
        IMAGE,
        "|linux|2|",
    ),
    ("{{not .Empty}} {{not .Os}}", IMAGE, "true false"),
    // range, with, variables.
    (
        "{{range .RepoTags}}{{.}} {{end}}",
        IMAGE,
        "alpine:3.20 alpine:latest ",
    ),
    (
        "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
        IMAGE,
        "a.b=1;maintainer=me;z=last;",
    ),
    (
        "{{range $i, $t := .RepoTags}}{{$i}}:{{$t}} {{end}}",
        IMAGE,
        "0:alpine:3.20 1:alpine:latest ",
    ),
    (
        "{{range $t := .RepoTags}}[{{$t}}]{{end}}",
        IMAGE,
        "[alpine:3.20][alpine:latest]",
    ),
    (
        "{{range $i, $e := .Nested}}{{if $i}},{{end}}{{$e.Name}}{{end}}",
        IMAGE,
        "a,b",
    ),
    (
        "{{range .}}<{{.}}>{{end}}",
        r#"[1, "a", null, 2.5]"#,
        "<1><a><<no value>><2.5>",
    ),
    (
        "{{range $k, $v := .}}{{$k}}{{end}}",
        r#"{"b": 1, "a": 2, "c": 3}"#,
        "abc",
    ),
    ("{{range .Nothing}}x{{else}}none{{end}}", IMAGE, "none"),
    (
        "{{range .Config.ExposedPorts}}x{{end}}{{range $p, $_ := .Config.ExposedPorts}}{{$p}}{{end}}",
        IMAGE,
        "x80/tcp",
    ),
    (
        r#"{{range .Nested}}{{if eq .Name "a"}}{{continue}}{{end}}{{.Name}}{{end}}"#,
        IMAGE,
        "b",
    ),
    ("{{range .Nested}}{{.Name}}{{break}}{{end}}", IMAGE, "a"),
    ("{{range 3}}{{.}}{{end}}", NONE, "012"),
    (
        "{{range .Nested}}{{$.Os}}-{{.Name}} {{end}}",
        IMAGE,
        "linux-a linux-b ",
    ),
    ("{{with .Config}}{{.Cmd}}{{end}}", IMAGE, "[sh -c x]"),
    ("{{with .Nothing}}x{{else}}empty{{end}}", IMAGE, "empty"),
    (
        "{{with .Nothing}}a{{else with .Os}}{{.}}{{end}}",
        IMAGE,
        "linux",
    ),
    ("{{with $x := .Os}}{{$x}}{{end}}", IMAGE, "linux"),
    (
        r#"{{with .Config}}{{with .Labels}}{{index . "z"}}{{end}}{{end}}"#,
        IMAGE,
        "last",
    ),
    (
        "{{$x := 1}}{{range .RepoTags}}{{$x = 2}}{{end}}{{$x}}",
        IMAGE,
        "2",
    ),
    ("{{$c := .Config}}{{$c.Labels.maintainer}}", IMAGE, "me"),
    ("{{$n := len .RepoTags}}{{$n}}", IMAGE, "2"),
    (
        "{{len .Repository}} {{len .Config.Labels}} {{len .Nothing}}",
        IMAGE,
        "6 3 0",
    ),
    // Pipelines and printing functions.
    ("{{.Repository | upper}}", IMAGE, "ALPINE"),
    (
        r#"{{.Repository | printf "%s!" | upper}}"#,
        IMAGE,
        "ALPINE!",
    ),
    (r#"{{3 | printf "%d-%d" 2}}"#, NONE, "2-3"),
    (
        r#"{{printf "%-10s|%5s|%d|%.2f|%q|%v|%x|%t" .Repository .Tag .Size .Ratio .Os .RepoTags .Repository .Flags.on}}"#,
        IMAGE,
        r#"alpine    | 3.20|7800000|1.50|"linux"|[alpine:3.20 alpine:latest]|616c70696e65|true"#,
    ),
    (
        r#"{{printf "%5.1f|%05d|%+d|%x|%X|%o|%e" .Ratio 42 5 255 255 8 1234.5678}}"#,
        IMAGE,
        "  1.5|00042|+5|ff|FF|10|1.234568e+03",
    ),
    (
        r#"{{printf "%v %v %v" true nil 0x1F}}"#,
        NONE,
        "true <nil> 31",
    ),
    (
        r#"{{printf "%-6s|" "héllo"}}{{printf "%d%%" 50}}"#,
        NONE,
        "héllo |50%",
    ),
    (
        r#"{{printf "%s" 5}}|{{printf "%d"}}"#,
        NONE,
        "%!s(int=5)|%!d(MISSING)",
    ),
    (r#"{{printf "%c%c" 'h' 105}}"#, NONE, "hi"),
    (r#"{{print 1 2 "a" "b" 3}}"#, NONE, "1 2ab3"),
    ("{{println .Os .Size}}", IMAGE, "linux 7800000\n"),
    ("{{print .Nothing}}", IMAGE, "<nil>"),
    // Escapers.
    (
        r#"{{html "<a href='x'>&</a>"}}"#,
        NONE,
        "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;",
    ),
    (r#"{{js "it's <b>"}}"#, NONE, r"it\'s \u003Cb\u003E"),
    (r#"{{urlquery "a b&c"}}"#, NONE, "a+b%26c"),
    // Docker's string helpers.
    (
        r#"{{join .RepoTags ", "}}"#,
        IMAGE,
        "alpine:3.20, alpine:latest",
    ),
    (
        r#"{{split .Tag "."}} {{index (split .Tag ".") 1}}"#,
        IMAGE,
        "[3 20] 20",
    ),
    (
        r#"{{lower "ABC"}} {{upper .Os}} {{title "hello wide-world"}}"#,
        IMAGE,
        "abc LINUX Hello Wide-World",
    ),
    (
        "{{truncate .Id 10}}|{{truncate .Os 99}}",
        IMAGE,
        "sha256:abc|linux",
    ),
    (
        "[{{pad .Os 2 1}}][{{pad .Empty 2 1}}]",
        IMAGE,
        "[  linux ][]",
    ),
    // Lexical details: comments, trim markers, literals.
    ("{{/* a comment */}}x{{- /* trimmed */ -}}  y", NONE, "xy"),
    ("a  {{- .Os -}}  b", IMAGE, "alinuxb"),
    (
        "{{ .Os }}\n{{- \"\\n\" -}}\n{{ .Tag }}",
        IMAGE,
        "linux\n3.20",
    ),
    (
        "{{- range .RepoTags}}\n  {{.}}\n{{- end}}",
        IMAGE,
        "\n  alpine:3.20\n  alpine:latest",
    ),
    (
        r#"{{`raw\n`}}|{{"tab\tq\""}}|{{-3}}|{{1.5e3}}|{{0o17}}"#,
        NONE,
        "raw\\n|tab\tq\"|-3|1500|15",
    ),
    (
        "{{if\n  .Os\n}}multi-line action{{end}}",
        IMAGE,
        "multi-line action",
    ),
];

#[test]
fn template_cases() {
    assert!(CASES.len() >= 60, "only {} cases", CASES.len());
    for (template, data_json, expected) in CASES {
        check(template, data_json, expected);
    }
}

fn error_of(template: &str, data_json: &str) -> TemplateError {
    match Template::parse(template).and_then(|t| t.execute(&data(data_json))) {
        Ok(out) => panic!("{template:?} unexpectedly rendered {out:?}"),
        Err(err) => err,
    }
}

/// (template, data, full error text)
const ERRORS: &[(&str, &str, &str)] = &[
    ("{{.Os", IMAGE, "template: :1:0: unclosed action"),
    (
        "x {{foo .Os}}",
        IMAGE,
        r#"template: :1:4: function "foo" not defined"#,
    ),
    (
        "{{.Os.Bar}}",
        IMAGE,
        r#"template: :1:2: executing "" at <.Os.Bar>: can't evaluate field Bar in type string"#,
    ),
    (
        "{{\"abc}}",
        NONE,
        "template: :1:2: unterminated quoted string",
    ),
    (
        "{{`abc}}",
        NONE,
        "template: :1:2: unterminated raw quoted string",
    ),
    ("a{{end}}", NONE, "template: :1:3: unexpected {{end}}"),
    ("{{else}}", NONE, "template: :1:2: unexpected {{else}}"),
    ("{{if .Os}}x", IMAGE, "template: :1:2: unexpected EOF"),
    (
        "{{range .Nested}}{{else}}{{break}}{{end}}",
        IMAGE,
        "template: :1:27: {{break}} outside {{range}}",
    ),
    ("{{$x}}", NONE, r#"template: :1:2: undefined variable "$x""#),
    (
        "{{if .Os}}{{$y := 1}}{{end}}{{$y}}",
        IMAGE,
        r#"template: :1:30: undefined variable "$y""#,
    ),
    (
        "{{index .RepoTags 5}}",
        IMAGE,
        r#"template: :1:2: executing "" at <index>: error calling index: index out of range: 5"#,
    ),
    (
        "{{len 3}}",
        NONE,
        r#"template: :1:2: executing "" at <len>: error calling len: len of type int"#,
    ),
    (
        "{{range .Os}}{{end}}",
        IMAGE,
        r#"template: :1:8: executing "" at <.Os>: range can't iterate over linux"#,
    ),
    (
        "{{.Os 1}}",
        IMAGE,
        r#"template: :1:2: executing "" at <.Os>: can't give argument to non-function .Os"#,
    ),
    (
        "{{lt .Os 1}}",
        IMAGE,
        r#"template: :1:2: executing "" at <lt>: error calling lt: incompatible types for comparison"#,
    ),
    (
        "{{upper 1}}",
        NONE,
        r#"template: :1:2: executing "" at <upper>: wrong type for value; expected string; got int"#,
    ),
    (
        "{{printf}}",
        NONE,
        r#"template: :1:2: executing "" at <printf>: wrong number of args for printf: want at least 1 got 0"#,
    ),
    (
        "{{nil}}",
        NONE,
        r#"template: :1:2: executing "" at <nil>: nil is not a command"#,
    ),
    (
        "{{if}}{{end}}",
        NONE,
        "template: :1:4: missing value for if",
    ),
    ("{{}}", NONE, "template: :1:2: missing value for command"),
    (
        r#"{{.Os | "x"}}"#,
        IMAGE,
        "template: :1:8: non executable command in pipeline stage 2",
    ),
    (
        "{{.Os |}}",
        IMAGE,
        r#"template: :1:7: missing command after "|""#,
    ),
    ("{{/* unclosed", NONE, "template: :1:0: unclosed comment"),
    (
        "{{/* x */ .Os}}",
        NONE,
        "template: :1:9: comment ends before closing delimiter",
    ),
    ("{{(.Os}}", IMAGE, "template: :1:6: unclosed left paren"),
    ("{{.Os)}}", IMAGE, "template: :1:5: unexpected right paren"),
    (
        "{{@}}",
        NONE,
        "template: :1:2: unrecognized character in action: U+0040 '@'",
    ),
    ("{{3x}}", NONE, r#"template: :1:2: bad number syntax: "3x""#),
    (
        r#"{{define "x"}}{{end}}"#,
        NONE,
        "template: :1:2: {{define}} is not supported",
    ),
    (
        "{{if .Os}}{{else}}{{else}}{{end}}",
        IMAGE,
        "template: :1:20: expected end; found {{else}}",
    ),
    (
        "line1\n  {{.Os.X}}",
        IMAGE,
        r#"template: :2:4: executing "" at <.Os.X>: can't evaluate field X in type string"#,
    ),
];

#[test]
fn error_cases() {
    for (template, data_json, expected) in ERRORS {
        let err = error_of(template, data_json);
        assert_eq!(err.to_string(), *expected, "template {template:?}");
    }
}

#[test]
fn error_details_are_structured() {
    let err = error_of("ab\n{{.Os.Bar}}", IMAGE);
    assert_eq!(err.offset(), 5);
    assert_eq!(err.message(), "can't evaluate field Bar in type string");
    assert!(
        matches!(err, TemplateError::Exec { line: 2, column: 2, ref context, .. } if context == ".Os.Bar")
    );

    let err = error_of("{{ nope }}", NONE);
    assert!(matches!(
        err,
        TemplateError::Parse {
            offset: 3,
            line: 1,
            column: 3,
            ..
        }
    ));
}

#[test]
fn hostile_input_errors_instead_of_panicking() {
    let deep = format!("{}.{}", "(".repeat(5000), ")".repeat(5000));
    assert!(Template::parse(&format!("{{{{{deep}}}}}")).is_err());
    let blocks = "{{if 1}}".repeat(5000);
    assert!(Template::parse(&blocks).is_err());
    for src in [
        "{{",
        "}}{{",
        "{{-",
        "{{- -}}",
        "{{'",
        "{{'ab'}}",
        "{{\"\\",
        "{{$x :=",
        "{{range $a, 1}}",
        "{{ . . }}",
        "{{..}}",
        "{{.A.}}",
        "{{9999999999999999999999}}",
    ] {
        let _ = Template::parse(src).and_then(|t| t.execute(&json!({})));
    }
    // Huge printf widths are capped rather than allocated.
    let out = Template::parse(r#"{{printf "%*d" 1000000000000 1}}"#)
        .unwrap()
        .execute(&json!({}))
        .unwrap();
    assert!(out.len() < 100, "{out}");
}

#[test]
fn templates_are_reusable_and_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Template>();
    let template = Template::parse("{{.N}}").unwrap();
    assert_eq!(template.source(), "{{.N}}");
    assert_eq!(template.execute(&json!({"N": 1})).unwrap(), "1");
    assert_eq!(template.execute(&json!({"N": 2})).unwrap(), "2");
}

// --- render_list -----------------------------------------------------------

fn image_rows() -> Vec<Value> {
    vec![
        json!({"Tag": "latest", "Repository": "alpine", "ID": "abc123", "Size": "7.8MB"}),
        json!({"Tag": "v1.2.3", "Repository": "registry.example.com/team/app", "ID": "def456", "Size": "120MB"}),
    ]
}

fn image_headers() -> Value {
    json!({"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Size": "SIZE"})
}

const DEFAULT_TABLE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}";

#[test]
fn table_columns_align_like_tabwriter() {
    // Column width = widest cell + 3 padding, at least 10; last cell unpadded.
    // Widest repository is 29 characters, so that column is 32 wide.
    let expected = [
        "REPOSITORY                      TAG       IMAGE ID",
        "alpine                          latest    abc123",
        "registry.example.com/team/app   v1.2.3    def456",
        "",
    ]
    .join("\n");
    let format = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}";
    assert_eq!(
        render_list(format, DEFAULT_TABLE, &image_rows(), &image_headers()).unwrap(),
        expected
    );
    // Shells pass "\t" through literally; Docker expands it.
    let escaped = r"table {{.Repository}}\t{{.Tag}}\t{{.ID}}";
    assert_eq!(
        render_list(escaped, DEFAULT_TABLE, &image_rows(), &image_headers()).unwrap(),
        expected
    );
}

#[test]
fn bare_table_and_empty_format_use_the_default() {
    let expected = [
        "REPOSITORY                      TAG       IMAGE ID   SIZE",
        "alpine                          latest    abc123     7.8MB",
        "registry.example.com/team/app   v1.2.3    def456     120MB",
        "",
    ]
    .join("\n");
    assert_eq!(
        render_list("table", DEFAULT_TABLE, &image_rows(), &image_headers()).unwrap(),
        expected
    );
    assert_eq!(
        render_list("", DEFAULT_TABLE, &image_rows(), &image_headers()).unwrap(),
        expected
    );
}

#[test]
fn table_without_rows_still_prints_the_header() {
    let out = render_list(
        "table {{.Repository}}\t{{.Tag}}",
        DEFAULT_TABLE,
        &[],
        &image_headers(),
    )
    .unwrap();
    assert_eq!(out, "REPOSITORY   TAG\n");
}

#[test]
fn table_header_keeps_text_through_string_helpers() {
    // Docker renders headers with identity versions of lower/truncate/...;
    // pad is not swapped, so it still shifts the header with its column.
    let format = "table {{.Repository | lower}}\t{{truncate .ID 3}}\t{{pad .Tag 1 0}}";
    let rows = [json!({"Repository": "ALPINE", "ID": "abc123", "Tag": "latest"})];
    let expected = "REPOSITORY   IMAGE ID    TAG\nalpine       abc         latest\n";
    assert_eq!(
        render_list(format, DEFAULT_TABLE, &rows, &image_headers()).unwrap(),
        expected
    );
}

#[test]
fn plain_format_prints_one_line_per_row_with_literal_tabs() {
    let out = render_list(
        "{{.Repository}}\t{{.Tag}}",
        DEFAULT_TABLE,
        &image_rows(),
        &image_headers(),
    )
    .unwrap();
    assert_eq!(
        out,
        "alpine\tlatest\nregistry.example.com/team/app\tv1.2.3\n"
    );
    assert_eq!(
        render_list("{{.ID}}", DEFAULT_TABLE, &[], &image_headers()).unwrap(),
        ""
    );
}

#[test]
fn json_format_prints_compact_rows_with_sorted_keys() {
    let out = render_list("json", DEFAULT_TABLE, &image_rows(), &image_headers()).unwrap();
    assert_eq!(
        out,
        concat!(
            r#"{"ID":"abc123","Repository":"alpine","Size":"7.8MB","Tag":"latest"}"#,
            "\n",
            r#"{"ID":"def456","Repository":"registry.example.com/team/app","Size":"120MB","Tag":"v1.2.3"}"#,
            "\n"
        )
    );
}

#[test]
fn render_list_reports_template_errors() {
    let err = render_list(
        "table {{.Repository",
        DEFAULT_TABLE,
        &image_rows(),
        &image_headers(),
    )
    .unwrap_err();
    assert_eq!(err.message(), "unclosed action");
    let err = render_list(
        "{{.Repository.X}}",
        DEFAULT_TABLE,
        &image_rows(),
        &image_headers(),
    )
    .unwrap_err();
    assert!(matches!(err, TemplateError::Exec { .. }), "{err}");
}
