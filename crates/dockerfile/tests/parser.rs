//! Data-driven parser tests: each case is a Dockerfile and a compact
//! rendering of what it parses to (`line:col-endline Instruction`, the
//! `FROM a` line omitted), or `ERR line:col message`.

use strata_dockerfile::parse;

fn render(src: &str) -> String {
    match parse(src) {
        Ok(df) => {
            let mut out = Vec::new();
            if df.escape != '\\' {
                out.push(format!("escape {:?}", df.escape));
            }
            for d in [&df.directives.syntax, &df.directives.check]
                .into_iter()
                .flatten()
            {
                out.push(format!("#{}={}", d.name, d.value));
            }
            for n in df.instructions().filter(|n| n.original != "FROM a") {
                out.push(format!(
                    "{}:{}-{} {:?}",
                    n.span.line, n.span.column, n.span.end_line, n.instruction
                ));
            }
            if !df.empty_continuation_lines.is_empty() {
                out.push(format!("empty {:?}", df.empty_continuation_lines));
            }
            out.join("\n")
        }
        Err(e) => format!("ERR {}:{} {}", e.line, e.column, e.message),
    }
}

#[track_caller]
fn check(input: &str, expected: &str) {
    let got = render(input);
    assert_eq!(got, expected, "input: {input:?}");
}

#[test]
fn parser_cases() {
    check(
        "FROM a\nRUN echo hi",
        "2:1-2 Run(Run { command: Shell(\"echo hi\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "from a\nrun echo hi",
        "1:1-1 From(From { image: \"a\", name: None, as_keyword: None, platform: None })\n2:1-2 Run(Run { command: Shell(\"echo hi\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\n  RUN   echo   hi  ",
        "2:3-2 Run(Run { command: Shell(\"echo   hi\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN echo \\\n  hi",
        "2:1-3 Run(Run { command: Shell(\"echo   hi\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN echo \\\n# comment\n  hi",
        "2:1-4 Run(Run { command: Shell(\"echo   hi\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN echo \\\n\n  hi",
        "2:1-4 Run(Run { command: Shell(\"echo   hi\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })\nempty [3]",
    );
    check(
        "FROM a\nRUN echo \\",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "# escape=`\nFROM a\nRUN echo `\n  hi\nCOPY c:\\src c:\\dst",
        "escape '`'\n3:1-4 Run(Run { command: Shell(\"echo   hi\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })\n5:1-5 Copy(Copy { sources: [\"c:\\\\src\"], dest: \"c:\\\\dst\", heredocs: [], from: None, chown: None, chmod: None, link: false, parents: false, exclude: [], json: false })",
    );
    check(
        "# syntax=docker/dockerfile:1\n# check=skip=all\nFROM a",
        "#syntax=docker/dockerfile:1\n#check=skip=all",
    );
    check(
        "# foo=bar\n# escape=`\nFROM a\nRUN echo \\\n x",
        "4:1-5 Run(Run { command: Shell(\"echo  x\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check("#escape = `\nFROM a", "escape '`'");
    check(
        "\n# escape=`\nFROM a\nRUN a \\\n b",
        "4:1-5 Run(Run { command: Shell(\"a  b\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "# escape=\\\n# escape=`\nFROM a",
        "ERR 2:1 only one escape parser directive can be used",
    );
    check(
        "FROM a\nRUN [\"echo\", \"hi\"]",
        "2:1-2 Run(Run { command: Exec([\"echo\", \"hi\"]), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN [\"echo\", hi]",
        "2:1-2 Run(Run { command: Shell(\"[\\\"echo\\\", hi]\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN [ \"a\\\"b\", \"\\u00e9\" ]",
        "2:1-2 Run(Run { command: Exec([\"a\\\"b\", \"é\"]), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN []",
        "2:1-2 Run(Run { command: Exec([]), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN <<EOF\necho hi\nEOF",
        "2:1-4 Run(Run { command: Shell(\"<<EOF\"), heredocs: [Heredoc { name: \"EOF\", content: \"echo hi\\n\", expand: true, chomp: false, file_descriptor: None }], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN <<-EOF\n\techo hi\n\tEOF",
        "2:1-4 Run(Run { command: Shell(\"<<-EOF\"), heredocs: [Heredoc { name: \"EOF\", content: \"echo hi\\n\", expand: true, chomp: true, file_descriptor: None }], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN <<'EOF' bash\necho $HOME\nEOF",
        "2:1-4 Run(Run { command: Shell(\"<<'EOF' bash\"), heredocs: [Heredoc { name: \"EOF\", content: \"echo $HOME\\n\", expand: false, chomp: false, file_descriptor: None }], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN cat <<A >a && cat <<\"B\" >b\n1\nA\n2\nB",
        "2:1-6 Run(Run { command: Shell(\"cat <<A >a && cat <<\\\"B\\\" >b\"), heredocs: [Heredoc { name: \"A\", content: \"1\\n\", expand: true, chomp: false, file_descriptor: None }, Heredoc { name: \"B\", content: \"2\\n\", expand: false, chomp: false, file_descriptor: None }], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN python3 <<EOF\nprint(1)\nEOF\nRUN echo after",
        "2:1-4 Run(Run { command: Shell(\"python3 <<EOF\"), heredocs: [Heredoc { name: \"EOF\", content: \"print(1)\\n\", expand: true, chomp: false, file_descriptor: None }], mounts: [], mount_flags: [], network: None, security: None })\n5:1-5 Run(Run { command: Shell(\"echo after\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nCOPY <<EOF /etc/x\nhello\nEOF",
        "2:1-4 Copy(Copy { sources: [], dest: \"/etc/x\", heredocs: [Heredoc { name: \"EOF\", content: \"hello\\n\", expand: true, chomp: false, file_descriptor: None }], from: None, chown: None, chmod: None, link: false, parents: false, exclude: [], json: false })",
    );
    check(
        "FROM a\nADD <<A <<B /dst/\na\nA\nb\nB",
        "2:1-6 Add(Add { sources: [], dest: \"/dst/\", heredocs: [Heredoc { name: \"A\", content: \"a\\n\", expand: true, chomp: false, file_descriptor: None }, Heredoc { name: \"B\", content: \"b\\n\", expand: true, chomp: false, file_descriptor: None }], chown: None, chmod: None, link: false, checksum: None, keep_git_dir: None, exclude: [], json: false })",
    );
    check(
        "FROM a\nRUN echo '<<EOF'",
        "2:1-2 Run(Run { command: Shell(\"echo '<<EOF'\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN cat <<<word",
        "2:1-2 Run(Run { command: Shell(\"cat <<<word\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nCOPY x <<EOF",
        "ERR 2:8 COPY cannot accept a heredoc as a destination",
    );
    check(
        "FROM --platform=$BUILDPLATFORM a AS b",
        "1:1-1 From(From { image: \"a\", name: Some(\"b\"), as_keyword: Some(\"AS\"), platform: Some(\"$BUILDPLATFORM\") })",
    );
    check(
        "FROM a as B",
        "1:1-1 From(From { image: \"a\", name: Some(\"B\"), as_keyword: Some(\"as\"), platform: None })",
    );
    check(
        "FROM a AS b c",
        "ERR 1:1 FROM requires either one or three arguments",
    );
    check(
        "FROM a AS b-1.x_y",
        "1:1-1 From(From { image: \"a\", name: Some(\"b-1.x_y\"), as_keyword: Some(\"AS\"), platform: None })",
    );
    check("FROM --foo=x a", "ERR 1:6 unknown flag: --foo");
    check(
        "FROM --platform a",
        "ERR 1:6 missing a value on flag: --platform",
    );
    check(
        "FROM a\nRUN --mount=type=bind,source=/a,target=/b,from=x,rw echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [Bind(BindMount { target: \"/b\", source: Some(\"/a\"), from: Some(\"x\"), readwrite: true })], mount_flags: [\"type=bind,source=/a,target=/b,from=x,rw\"], network: None, security: None })",
    );
    check(
        "FROM a\nRUN --mount=target=/b echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [Bind(BindMount { target: \"/b\", source: None, from: None, readwrite: false })], mount_flags: [\"target=/b\"], network: None, security: None })",
    );
    check(
        "FROM a\nRUN --mount=type=bind,src=/a,dst=/b,readonly=false echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [Bind(BindMount { target: \"/b\", source: Some(\"/a\"), from: None, readwrite: true })], mount_flags: [\"type=bind,src=/a,dst=/b,readonly=false\"], network: None, security: None })",
    );
    check(
        "FROM a\nRUN --mount=type=cache,target=/c,id=x,sharing=private,mode=0755,uid=1,gid=2,ro echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [Cache(CacheMount { target: \"/c\", id: Some(\"x\"), sharing: Private, from: None, source: None, readonly: true, mode: Some(493), uid: Some(1), gid: Some(2) })], mount_flags: [\"type=cache,target=/c,id=x,sharing=private,mode=0755,uid=1,gid=2,ro\"], network: None, security: None })",
    );
    check(
        "FROM a\nRUN --mount=type=cache,target=/c,sharing=weird echo",
        "ERR 2:13 invalid --mount: unsupported sharing value \"weird\"",
    );
    check(
        "FROM a\nRUN --mount=type=tmpfs,target=/t,size=64m echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [Tmpfs(TmpfsMount { target: \"/t\", size: Some(67108864) })], mount_flags: [\"type=tmpfs,target=/t,size=64m\"], network: None, security: None })",
    );
    check(
        "FROM a\nRUN --mount=type=secret,id=tok,env=TOKEN,required=true echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [Secret(SecretMount { id: Some(\"tok\"), target: None, env: Some(\"TOKEN\"), required: true, mode: None, uid: None, gid: None })], mount_flags: [\"type=secret,id=tok,env=TOKEN,required=true\"], network: None, security: None })",
    );
    check(
        "FROM a\nRUN --mount=type=secret,id=tok,target=/s,mode=0400,uid=0,gid=0,required echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [Secret(SecretMount { id: Some(\"tok\"), target: Some(\"/s\"), env: None, required: true, mode: Some(256), uid: Some(0), gid: Some(0) })], mount_flags: [\"type=secret,id=tok,target=/s,mode=0400,uid=0,gid=0,required\"], network: None, security: None })",
    );
    check(
        "FROM a\nRUN --mount=type=ssh echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [Ssh(SshMount { id: None, target: None, required: false, mode: None, uid: None, gid: None })], mount_flags: [\"type=ssh\"], network: None, security: None })",
    );
    check(
        "FROM a\nRUN --mount=type=ssh,id=gh,target=/ssh,required=false echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [Ssh(SshMount { id: Some(\"gh\"), target: Some(\"/ssh\"), required: false, mode: None, uid: None, gid: None })], mount_flags: [\"type=ssh,id=gh,target=/ssh,required=false\"], network: None, security: None })",
    );
    check(
        "FROM a\nRUN --mount=type=secret echo",
        "ERR 2:13 invalid --mount: invalid secret mount. one of source, target required",
    );
    check(
        "FROM a\nRUN --mount=type=nfs,target=/x echo",
        "ERR 2:13 invalid --mount: unsupported mount type \"nfs\"",
    );
    check(
        "FROM a\nRUN --mount=type=tmpfs,target=/t,uid=1 echo",
        "ERR 2:13 invalid --mount: unexpected key 'uid' for mount type 'tmpfs'",
    );
    check(
        "FROM a\nRUN --mount=type=cache,target=/c,uid=$UID echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [Cache(CacheMount { target: \"/c\", id: None, sharing: Shared, from: None, source: None, readonly: false, mode: None, uid: None, gid: None })], mount_flags: [\"type=cache,target=/c,uid=$UID\"], network: None, security: None })",
    );
    check(
        "FROM a\nRUN --mount=type=cache,target=/c --mount=type=secret,id=s echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [Cache(CacheMount { target: \"/c\", id: None, sharing: Shared, from: None, source: None, readonly: false, mode: None, uid: None, gid: None }), Secret(SecretMount { id: Some(\"s\"), target: None, env: None, required: false, mode: None, uid: None, gid: None })], mount_flags: [\"type=cache,target=/c\", \"type=secret,id=s\"], network: None, security: None })",
    );
    check(
        "FROM a\nRUN --network=none --security=insecure echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [], mount_flags: [], network: Some(None), security: Some(Insecure) })",
    );
    check(
        "FROM a\nRUN --network=host echo",
        "2:1-2 Run(Run { command: Shell(\"echo\"), heredocs: [], mounts: [], mount_flags: [], network: Some(Host), security: None })",
    );
    check(
        "FROM a\nRUN --network=bridge echo",
        "ERR 2:5 unsupported network mode \"bridge\"",
    );
    check(
        "FROM a\nRUN --security=root echo",
        "ERR 2:5 unsupported security mode \"root\"",
    );
    check(
        "FROM a\nRUN --network=none --network=host echo",
        "ERR 2:20 duplicate flag specified: --network",
    );
    check(
        "FROM a\nRUN -- --not-a-flag",
        "2:1-2 Run(Run { command: Shell(\"--not-a-flag\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check("FROM a\nRUN", "ERR 2:1 RUN requires at least one argument");
    check(
        "FROM a\nCMD echo hi",
        "2:1-2 Cmd(Cmd { command: Shell(\"echo hi\") })",
    );
    check(
        "FROM a\nCMD [\"echo\",\"hi\"]",
        "2:1-2 Cmd(Cmd { command: Exec([\"echo\", \"hi\"]) })",
    );
    check("FROM a\nCMD --x", "ERR 2:5 unknown flag: --x");
    check(
        "FROM a\nENTRYPOINT [\"/bin/app\"]",
        "2:1-2 Entrypoint(Entrypoint { command: Exec([\"/bin/app\"]) })",
    );
    check(
        "FROM a\nENTRYPOINT exec app",
        "2:1-2 Entrypoint(Entrypoint { command: Shell(\"exec app\") })",
    );
    check(
        "FROM a\nLABEL a=b c=\"d e\" \"f g\"='h'",
        "2:1-2 Label(Label { labels: [KeyValue { key: \"a\", value: \"b\" }, KeyValue { key: \"c\", value: \"\\\"d e\\\"\" }, KeyValue { key: \"\\\"f g\\\"\", value: \"'h'\" }], legacy: false })",
    );
    check(
        "FROM a\nLABEL version 1.0",
        "2:1-2 Label(Label { labels: [KeyValue { key: \"version\", value: \"1.0\" }], legacy: true })",
    );
    check(
        "FROM a\nLABEL a=b\\ c",
        "2:1-2 Label(Label { labels: [KeyValue { key: \"a\", value: \"b\\\\ c\" }], legacy: false })",
    );
    check(
        "FROM a\nLABEL",
        "ERR 2:1 LABEL requires at least one argument",
    );
    check("FROM a\nLABEL =x", "ERR 2:7 LABEL names can not be blank");
    check(
        "FROM a\nEXPOSE 80 8080/udp ${PORT}",
        "2:1-2 Expose(Expose { ports: [\"80\", \"8080/udp\", \"${PORT}\"] })",
    );
    check(
        "FROM a\nEXPOSE",
        "ERR 2:1 EXPOSE requires at least one argument",
    );
    check(
        "FROM a\nENV A=1",
        "2:1-2 Env(Env { vars: [KeyValue { key: \"A\", value: \"1\" }], legacy: false })",
    );
    check(
        "FROM a\nENV A=1 B=2",
        "2:1-2 Env(Env { vars: [KeyValue { key: \"A\", value: \"1\" }, KeyValue { key: \"B\", value: \"2\" }], legacy: false })",
    );
    check(
        "FROM a\nENV A \"quoted value\"",
        "2:1-2 Env(Env { vars: [KeyValue { key: \"A\", value: \"\\\"quoted value\\\"\" }], legacy: true })",
    );
    check(
        "FROM a\nENV A=",
        "2:1-2 Env(Env { vars: [KeyValue { key: \"A\", value: \"\" }], legacy: false })",
    );
    check(
        "FROM a\nENV A=\"multi \\\n  line\"",
        "2:1-3 Env(Env { vars: [KeyValue { key: \"A\", value: \"\\\"multi   line\\\"\" }], legacy: false })",
    );
    check(
        "FROM a\nADD --chown=1:2 --chmod=644 --link --exclude=a --exclude=b src /dst",
        "2:1-2 Add(Add { sources: [\"src\"], dest: \"/dst\", heredocs: [], chown: Some(\"1:2\"), chmod: Some(\"644\"), link: true, checksum: None, keep_git_dir: None, exclude: [\"a\", \"b\"], json: false })",
    );
    check(
        "FROM a\nADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/f.tgz /",
        "2:1-2 Add(Add { sources: [\"https://example.com/f.tgz\"], dest: \"/\", heredocs: [], chown: None, chmod: None, link: false, checksum: Some(\"sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d\"), keep_git_dir: None, exclude: [], json: false })",
    );
    check(
        "FROM a\nADD --keep-git-dir https://github.com/x/y.git#v1 /src",
        "2:1-2 Add(Add { sources: [\"https://github.com/x/y.git#v1\"], dest: \"/src\", heredocs: [], chown: None, chmod: None, link: false, checksum: None, keep_git_dir: Some(true), exclude: [], json: false })",
    );
    check(
        "FROM a\nADD --link=false a b",
        "2:1-2 Add(Add { sources: [\"a\"], dest: \"b\", heredocs: [], chown: None, chmod: None, link: false, checksum: None, keep_git_dir: None, exclude: [], json: false })",
    );
    check(
        "FROM a\nADD --link=maybe a b",
        "ERR 2:5 expecting boolean value for flag --link, not: maybe",
    );
    check("FROM a\nADD --from=x a b", "ERR 2:5 unknown flag: --from");
    check(
        "FROM a\nCOPY [\"a b\", \"c\", \"/d/\"]",
        "2:1-2 Copy(Copy { sources: [\"a b\", \"c\"], dest: \"/d/\", heredocs: [], from: None, chown: None, chmod: None, link: false, parents: false, exclude: [], json: true })",
    );
    check(
        "FROM a\nCOPY --from=build --parents a/*/b /dst/",
        "2:1-2 Copy(Copy { sources: [\"a/*/b\"], dest: \"/dst/\", heredocs: [], from: Some(\"build\"), chown: None, chmod: None, link: false, parents: true, exclude: [], json: false })",
    );
    check(
        "FROM a\nCOPY --parents=true a /",
        "2:1-2 Copy(Copy { sources: [\"a\"], dest: \"/\", heredocs: [], from: None, chown: None, chmod: None, link: false, parents: true, exclude: [], json: false })",
    );
    check(
        "FROM a\nCOPY --checksum=x a b",
        "ERR 2:6 unknown flag: --checksum",
    );
    check(
        "FROM a\nCOPY --chown=user:group a b",
        "2:1-2 Copy(Copy { sources: [\"a\"], dest: \"b\", heredocs: [], from: None, chown: Some(\"user:group\"), chmod: None, link: false, parents: false, exclude: [], json: false })",
    );
    check(
        "FROM a\nCOPY",
        "ERR 2:1 COPY requires at least two arguments",
    );
    check(
        "FROM a\nVOLUME /a /b",
        "2:1-2 Volume(Volume { paths: [\"/a\", \"/b\"], json: false })",
    );
    check(
        "FROM a\nVOLUME [\"/a\", \"/b\"]",
        "2:1-2 Volume(Volume { paths: [\"/a\", \"/b\"], json: true })",
    );
    check(
        "FROM a\nVOLUME [\"\"]",
        "ERR 2:1 VOLUME specified can not be an empty string",
    );
    check(
        "FROM a\nVOLUME",
        "ERR 2:1 VOLUME requires at least one argument",
    );
    check("FROM a\nUSER app", "2:1-2 User(User { user: \"app\" })");
    check(
        "FROM a\nUSER 1000:1000",
        "2:1-2 User(User { user: \"1000:1000\" })",
    );
    check("FROM a\nUSER", "ERR 2:1 USER requires exactly one argument");
    check(
        "FROM a\nWORKDIR /a b",
        "2:1-2 Workdir(Workdir { path: \"/a b\" })",
    );
    check(
        "FROM a\nWORKDIR",
        "ERR 2:1 WORKDIR requires exactly one argument",
    );
    check(
        "FROM a\nARG A",
        "2:1-2 Arg(Arg { args: [ArgDecl { name: \"A\", default: None }] })",
    );
    check(
        "FROM a\nARG A=1 B C=\"x y\"",
        "2:1-2 Arg(Arg { args: [ArgDecl { name: \"A\", default: Some(\"1\") }, ArgDecl { name: \"B\", default: None }, ArgDecl { name: \"C\", default: Some(\"\\\"x y\\\"\") }] })",
    );
    check("FROM a\nARG =1", "ERR 2:5 ARG names can not be blank");
    check("FROM a\nARG", "ERR 2:1 ARG requires at least one argument");
    check(
        "FROM a\nONBUILD RUN echo hi",
        "2:1-2 Onbuild(Onbuild { expression: \"RUN echo hi\", trigger: Run(Run { command: Shell(\"echo hi\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None }) })",
    );
    check(
        "FROM a\nONBUILD COPY --from=x a b",
        "2:1-2 Onbuild(Onbuild { expression: \"COPY --from=x a b\", trigger: Copy(Copy { sources: [\"a\"], dest: \"b\", heredocs: [], from: Some(\"x\"), chown: None, chmod: None, link: false, parents: false, exclude: [], json: false }) })",
    );
    check(
        "FROM a\nonbuild add . /app",
        "2:1-2 Onbuild(Onbuild { expression: \"add . /app\", trigger: Add(Add { sources: [\".\"], dest: \"/app\", heredocs: [], chown: None, chmod: None, link: false, checksum: None, keep_git_dir: None, exclude: [], json: false }) })",
    );
    check(
        "FROM a\nONBUILD ONBUILD RUN x",
        "ERR 2:1 Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
    );
    check(
        "FROM a\nONBUILD MAINTAINER me",
        "ERR 2:9 MAINTAINER isn't allowed as an ONBUILD trigger",
    );
    check(
        "FROM a\nONBUILD",
        "ERR 2:1 ONBUILD requires at least one argument",
    );
    check(
        "FROM a\nONBUILD RUNX y",
        "ERR 2:9 unknown instruction: RUNX",
    );
    check(
        "FROM a\nSTOPSIGNAL SIGKILL",
        "2:1-2 Stopsignal(Stopsignal { signal: \"SIGKILL\" })",
    );
    check(
        "FROM a\nSTOPSIGNAL 9",
        "2:1-2 Stopsignal(Stopsignal { signal: \"9\" })",
    );
    check(
        "FROM a\nSTOPSIGNAL a b",
        "ERR 2:1 STOPSIGNAL requires exactly one argument",
    );
    check("FROM a\nHEALTHCHECK NONE", "2:1-2 Healthcheck(None)");
    check(
        "FROM a\nHEALTHCHECK CMD curl -f http://localhost/",
        "2:1-2 Healthcheck(Cmd { command: Shell(\"curl -f http://localhost/\"), interval: None, timeout: None, start_period: None, start_interval: None, retries: None })",
    );
    check(
        "FROM a\nHEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=5 CMD [\"true\"]",
        "2:1-2 Healthcheck(Cmd { command: Exec([\"true\"]), interval: Some(300s), timeout: Some(3s), start_period: Some(90s), start_interval: Some(500ms), retries: Some(5) })",
    );
    check(
        "FROM a\nHEALTHCHECK --interval=0s CMD true",
        "2:1-2 Healthcheck(Cmd { command: Shell(\"true\"), interval: Some(0ns), timeout: None, start_period: None, start_interval: None, retries: None })",
    );
    check(
        "FROM a\nHEALTHCHECK --interval=5 CMD true",
        "ERR 2:13 time: invalid duration \"5\"",
    );
    check(
        "FROM a\nHEALTHCHECK --retries=-1 CMD true",
        "ERR 2:13 invalid --retries value \"-1\" (must be a non-negative integer)",
    );
    check(
        "FROM a\nHEALTHCHECK --interval=1s NONE",
        "ERR 2:1 HEALTHCHECK NONE takes no arguments",
    );
    check(
        "FROM a\nHEALTHCHECK CMD",
        "ERR 2:1 Missing command after HEALTHCHECK CMD",
    );
    check(
        "FROM a\nHEALTHCHECK RUN x",
        "ERR 2:13 Unknown type \"RUN\" in HEALTHCHECK (try CMD)",
    );
    check(
        "FROM a\nHEALTHCHECK --foo=1 CMD x",
        "ERR 2:13 unknown flag: --foo",
    );
    check(
        "FROM a\nSHELL [\"powershell\", \"-command\"]",
        "2:1-2 Shell(Shell { shell: [\"powershell\", \"-command\"] })",
    );
    check(
        "FROM a\nSHELL /bin/sh",
        "ERR 2:1 SHELL requires the arguments to be in JSON form",
    );
    check(
        "FROM a\nSHELL []",
        "ERR 2:1 SHELL requires at least one argument",
    );
    check(
        "FROM a\nMAINTAINER Jane <jane@example.com>",
        "2:1-2 Maintainer(Maintainer { name: \"Jane <jane@example.com>\" })",
    );
    check("FROM a\nRUNN x", "ERR 2:1 unknown instruction: RUNN");
    check("FROM a\nFOO", "ERR 2:1 unknown instruction: FOO");
    check(
        "ARG A\nARG B=1\nFROM a",
        "1:1-1 Arg(Arg { args: [ArgDecl { name: \"A\", default: None }] })\n2:1-2 Arg(Arg { args: [ArgDecl { name: \"B\", default: Some(\"1\") }] })",
    );
    check("ARG A\nRUN x", "ERR 2:1 no build stage in current context");
    check("ARG A", "ERR 1:1 no build stage in current context");
    check("", "ERR 1:1 file with no instructions");
    check("# only a comment\n\n", "ERR 1:1 file with no instructions");
    check(
        "\u{feff}FROM a\r\nRUN x\r\n",
        "2:1-2 Run(Run { command: Shell(\"x\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\n\tRUN\tx",
        "2:2-2 Run(Run { command: Shell(\"x\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nRUN echo \\\n  a \\\n  b\nRUN next",
        "2:1-4 Run(Run { command: Shell(\"echo   a   b\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })\n5:1-5 Run(Run { command: Shell(\"next\"), heredocs: [], mounts: [], mount_flags: [], network: None, security: None })",
    );
    check(
        "FROM a\nENV X=1 \\\n    Y=2",
        "2:1-3 Env(Env { vars: [KeyValue { key: \"X\", value: \"1\" }, KeyValue { key: \"Y\", value: \"2\" }], legacy: false })",
    );
}

#[test]
fn error_rendering() {
    let e = parse("FROM a\n\nRUNN echo hi\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:3:1: unknown instruction: RUNN\n  3 | RUNN echo hi\n    | ^"
    );
    let e = parse("FROM a\nRUN --mount=type=cache echo\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:2:13: invalid --mount: mount type cache requires a target\n  2 | RUN --mount=type=cache echo\n    |             ^"
    );
    let mut src = String::new();
    for _ in 0..11 {
        src.push_str("# c\n");
    }
    src.push_str("FROM a\nCOPY --nope a b\n");
    let e = parse(&src).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:13:6: unknown flag: --nope\n  13 | COPY --nope a b\n     |      ^"
    );
}

#[test]
fn stages_and_globals() {
    let df = parse("ARG X=1\nFROM a AS one\nRUN x\nFROM one\nCOPY --from=one / /\n").unwrap();
    assert_eq!(df.global_args.len(), 1);
    assert_eq!(df.stages.len(), 2);
    assert_eq!(df.stages[0].name.as_deref(), Some("one"));
    assert_eq!(df.stages[0].instructions.len(), 1);
    assert_eq!(df.stages[1].index, 1);
    assert_eq!(df.stages[1].from_instruction().image, "one");
    assert_eq!(df.instructions().count(), 5);
    assert_eq!(df.stage("ONE").map(|s| s.index), Some(0));
    assert!(df.stage("two").is_none());
}

/// Heredoc marker forms (vectors modelled on BuildKit's heredoc tests):
/// `(instruction line + body, expected [(name, content, expand, chomp, fd)])`.
#[test]
fn heredoc_forms() {
    type H = (&'static str, &'static str, bool, bool, Option<u32>);
    let cases: &[(&str, &[H])] = &[
        ("USER <<NOTHEREDOC", &[]),
        ("RUN <<EMPTY\nEMPTY", &[("EMPTY", "", true, false, None)]),
        (
            "RUN 3<<EMPTY2\nEMPTY2",
            &[("EMPTY2", "", true, false, Some(3))],
        ),
        ("RUN \"<<NOHEREDOC\"", &[]),
        ("RUN '<<NOHEREDOC'", &[]),
        (
            "RUN <<INDENT\n\tfoo\n\tbar\nINDENT",
            &[("INDENT", "\tfoo\n\tbar\n", true, false, None)],
        ),
        (
            "RUN <<-UNINDENT\n\tbaz\n\tquux\nUNINDENT",
            &[("UNINDENT", "baz\nquux\n", true, true, None)],
        ),
        (
            "RUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2",
            &[("UNINDENT2", "baz\nquux\n", true, true, None)],
        ),
        (
            "RUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND",
            &[("NOEXPAND", "don't expand $NAME\n", false, true, None)],
        ),
        (
            "RUN <<COMMENT\n# internal comment\necho hi # trailing\nCOMMENT",
            &[(
                "COMMENT",
                "# internal comment\necho hi # trailing\n",
                true,
                false,
                None,
            )],
        ),
        (
            "RUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT",
            &[("MOUNT", "echo hello\n", true, false, None)],
        ),
        (
            "COPY <<X <<Y /dest\nY\nX\nX\nY",
            &[
                ("X", "Y\n", true, false, None),
                ("Y", "X\n", true, false, None),
            ],
        ),
        (
            "COPY <<EOF /quotes\n\"foo\"\n'bar'\nEOF",
            &[("EOF", "\"foo\"\n'bar'\n", true, false, None)],
        ),
        (
            "RUN <<COMPLEX python3\nprint('hello world')\nCOMPLEX",
            &[("COMPLEX", "print('hello world')\n", true, false, None)],
        ),
        (
            "COPY <<file.txt /dest\nhello world\nfile.txt",
            &[("file.txt", "hello world\n", true, false, None)],
        ),
        (
            "RUN <<eo'f'\necho foo\neof",
            &[("eof", "echo foo\n", false, false, None)],
        ),
        (
            "RUN <<eo\\'f\necho foo\neo'f",
            &[("eo'f", "echo foo\n", true, false, None)],
        ),
        (
            "RUN <<'e'o\\'f\necho foo\neo'f",
            &[("eo'f", "echo foo\n", false, false, None)],
        ),
        (
            "RUN <<'one two'\necho bar\none two",
            &[("one two", "echo bar\n", false, false, None)],
        ),
        ("RUN <<$EOF\n$EOF", &[("$EOF", "", true, false, None)]),
        ("RUN <<  EOF\nEOF", &[("EOF", "", true, false, None)]),
        ("RUN <<  EOF  > foo\nEOF", &[("EOF", "", true, false, None)]),
        ("RUN << -EOF\n-EOF", &[("-EOF", "", true, false, None)]),
        ("RUN <<- EOF\n\tEOF", &[("EOF", "", true, true, None)]),
        (
            "RUN <<EOF <<EOF2\na\nEOF\nb\nEOF2",
            &[
                ("EOF", "a\n", true, false, None),
                ("EOF2", "b\n", true, false, None),
            ],
        ),
        ("RUN [\"<<EOF\"]", &[]),
        ("RUN cat <<<word", &[]),
    ];
    for (body, want) in cases {
        let src = format!("FROM a\n{body}\n");
        let df = parse(&src).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        let hs = match &df.stages[0].instructions[0].instruction {
            strata_dockerfile::Instruction::Run(r) => r.heredocs.clone(),
            strata_dockerfile::Instruction::Copy(c) => c.heredocs.clone(),
            strata_dockerfile::Instruction::User(u) => {
                assert_eq!(u.user, "<<NOTHEREDOC");
                Vec::new()
            }
            _ => Vec::new(),
        };
        let got: Vec<H> = hs
            .iter()
            .map(|h| {
                (
                    &*h.name.clone().leak(),
                    &*h.content.clone().leak(),
                    h.expand,
                    h.chomp,
                    h.file_descriptor,
                )
            })
            .collect();
        assert_eq!(&got[..], *want, "{body:?}");
        assert_eq!(df.stages[0].instructions.len(), 1, "{body:?}");
    }
    // Heredocs exist only for RUN, COPY and ADD: the next line is an instruction.
    assert!(parse("FROM a\nUSER <<INVALID\nINVALID\n").is_err());
    for bad in ["RUN <<'EOF\nEOF", "RUN <<\"EOF\nEOF", "RUN <<EOF'\nEOF"] {
        assert!(parse(&format!("FROM a\n{bad}\n")).is_err(), "{bad:?}");
    }
}

#[test]
fn mount_edge_cases() {
    let e = parse("FROM a\nRUN --mount=type=bind,from=$X,target=/x true\n").unwrap_err();
    assert_eq!(
        e.message,
        "invalid --mount: 'from' doesn't support variable expansion, define alias stage instead"
    );
    let e = parse("FROM a\nRUN --mount=type=secret,id=a,src=b true\n").unwrap_err();
    assert_eq!(
        e.message,
        "invalid --mount: both source and id can't be set"
    );
    let df = parse("FROM a\nRUN --mount=type=secret,source=tok true\n").unwrap();
    match &df.stages[0].instructions[0].instruction {
        strata_dockerfile::Instruction::Run(r) => match &r.mounts[0] {
            strata_dockerfile::Mount::Secret(s) => assert_eq!(s.id.as_deref(), Some("tok")),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    // Quotes in flag values are removed (as BuildKit's flag extraction does).
    let df = parse("FROM a\nRUN --mount=type=cache,target=\"/a b\" true\n").unwrap();
    match &df.stages[0].instructions[0].instruction {
        strata_dockerfile::Instruction::Run(r) => match &r.mounts[0] {
            strata_dockerfile::Mount::Cache(c) => assert_eq!(c.target, "/a b"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn run_scripts() {
    use strata_dockerfile::{Instruction, RunScript};
    let script = |src: &str| {
        let df = parse(&format!("FROM a\n{src}\n")).unwrap();
        match &df.stages[0].instructions[0].instruction {
            Instruction::Run(r) => r.script(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(script("RUN echo hi"), RunScript::Shell("echo hi".into()));
    assert_eq!(
        script("RUN [\"echo\", \"hi\"]"),
        RunScript::Exec(vec!["echo".into(), "hi".into()])
    );
    assert_eq!(
        script("RUN <<EOF\necho a\necho b\nEOF"),
        RunScript::Shell("echo a\necho b\n".into())
    );
    assert_eq!(
        script("RUN <<-'EOF'\n\t#!/usr/bin/env python3\n\tprint(1)\n\tEOF"),
        RunScript::Shebang("#!/usr/bin/env python3\nprint(1)\n".into())
    );
    assert_eq!(
        script("RUN <<EOF python3\nprint(1)\nEOF"),
        RunScript::Shell("<<EOF python3\nprint(1)\nEOF".into())
    );
    assert_eq!(
        script("RUN cat <<A > a && cat 3<<B\n1\nA\n2\nB"),
        RunScript::Shell("cat <<A > a && cat 3<<B\n1\nA\n2\nB".into())
    );
}
