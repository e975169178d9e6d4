//! Data-driven planner tests: a Dockerfile, options, and a compact rendering
//! of the resulting plan (or `ERR message`).

use strata_dockerfile::{
    Base, Instruction, Mount, PlanOptions, PlannedStep, Platform, parse, plan,
};

fn kv(list: &[(String, String)]) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn step(s: &PlannedStep) -> String {
    match &s.instruction {
        Instruction::Env(e) => format!(
            "ENV {}",
            e.vars
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instruction::Label(l) => format!(
            "LABEL {}",
            l.labels
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Instruction::Arg(_) => format!("ARG -> {}", kv(&s.build_args)),
        Instruction::Copy(c) => {
            let mut o = format!("COPY {:?} {}", c.sources, c.dest);
            if let Some(f) = &c.from {
                o += &format!(" from={f}");
            }
            if let Some(f) = &c.chown {
                o += &format!(" chown={f}");
            }
            for h in &c.heredocs {
                o += &format!(" <<{}={:?}", h.name, h.content);
            }
            o
        }
        Instruction::Add(a) => format!("ADD {:?} {} checksum={:?}", a.sources, a.dest, a.checksum),
        Instruction::Run(r) => {
            let mounts: Vec<String> = r
                .mounts
                .iter()
                .map(|m| match m {
                    Mount::Cache(c) => format!("cache:{}:{:?}", c.target, c.id),
                    Mount::Bind(b) => format!("bind:{}:{:?}", b.target, b.from),
                    other => format!("{other:?}"),
                })
                .collect();
            format!(
                "RUN {:?} mounts={mounts:?} env={}",
                r.command,
                kv(&s.build_args)
            )
        }
        Instruction::Workdir(w) => format!("WORKDIR {}", w.path),
        Instruction::User(u) => format!("USER {}", u.user),
        Instruction::Expose(e) => format!("EXPOSE {:?}", e.ports),
        Instruction::Volume(v) => format!("VOLUME {:?}", v.paths),
        Instruction::Stopsignal(s) => format!("STOPSIGNAL {}", s.signal),
        other => other.name().to_string(),
    }
}

fn render(src: &str, opts: &PlanOptions) -> String {
    let df = match parse(src) {
        Ok(d) => d,
        Err(e) => return format!("PARSE ERR {}", e.message),
    };
    let p = match plan(&df, opts) {
        Ok(p) => p,
        Err(e) => return format!("ERR {}", e.message),
    };
    let mut out = vec![format!(
        "target={} levels={:?} skipped={:?}",
        p.target, p.levels, p.skipped
    )];
    if !p.unused_build_args.is_empty() {
        out.push(format!("unused={:?}", p.unused_build_args));
    }
    for s in &p.stages {
        let base = match &s.base {
            Base::Scratch => "scratch".to_string(),
            Base::Image(i) => i.clone(),
            Base::Stage(j) => format!("stage{j}"),
        };
        let mut h = format!(
            "stage{} {} base={base} deps={:?}",
            s.index,
            s.name.as_deref().unwrap_or("-"),
            s.depends_on
        );
        if let Some(p) = &s.platform {
            h += &format!(" platform={p}");
        }
        if !s.image_refs.is_empty() {
            h += &format!(" images={:?}", s.image_refs);
        }
        out.push(h);
        for st in &s.steps {
            out.push(format!("  {}", step(st)));
        }
    }
    out.join("\n")
}

fn opts(args: &[(&str, &str)]) -> PlanOptions {
    PlanOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

#[track_caller]
fn check(src: &str, o: &PlanOptions, expected: &str) {
    assert_eq!(render(src, o), expected.trim(), "input:\n{src}");
}

#[test]
fn global_args_in_from() {
    let src = "ARG REG=docker.io\nARG TAG\nFROM $REG/busybox:${TAG:-1.36}\n";
    check(
        src,
        &opts(&[]),
        "
target=0 levels=[[0]] skipped=[]
stage0 - base=docker.io/busybox:1.36 deps=[]",
    );
    check(
        src,
        &opts(&[("TAG", "1.37"), ("REG", "localhost:5000")]),
        "
target=0 levels=[[0]] skipped=[]
stage0 - base=localhost:5000/busybox:1.37 deps=[]",
    );
    check(
        src,
        &opts(&[("OTHER", "x")]),
        r#"
target=0 levels=[[0]] skipped=[]
unused=["OTHER"]
stage0 - base=docker.io/busybox:1.36 deps=[]"#,
    );
    // Defaults may reference earlier global args.
    check(
        "ARG A=x\nARG B=${A}y\nFROM $B\n",
        &opts(&[]),
        "
target=0 levels=[[0]] skipped=[]
stage0 - base=xy deps=[]",
    );
}

#[test]
fn stage_arg_scoping() {
    let src = "ARG V=global\nFROM scratch\nENV A=$V\nARG V\nENV B=$V\nARG W=own\nENV C=$W\n";
    check(
        src,
        &opts(&[]),
        "
target=0 levels=[[0]] skipped=[]
stage0 - base=scratch deps=[]
  ENV A=
  ARG -> V=global
  ENV B=global
  ARG -> V=global,W=own
  ENV C=own",
    );
    check(
        src,
        &opts(&[("V", "cli"), ("W", "cli-w")]),
        "
target=0 levels=[[0]] skipped=[]
stage0 - base=scratch deps=[]
  ENV A=
  ARG -> V=cli
  ENV B=cli
  ARG -> V=cli,W=cli-w
  ENV C=cli-w",
    );
    // A stage default wins over the global default; ENV wins over ARG.
    check(
        "ARG V=global\nFROM scratch\nARG V=stage\nENV X=$V\nENV V=env\nLABEL v=$V\n",
        &opts(&[]),
        "
target=0 levels=[[0]] skipped=[]
stage0 - base=scratch deps=[]
  ARG -> V=stage
  ENV X=stage
  ENV V=env
  LABEL v=env",
    );
    // Declared without value and not given: stays unset.
    check(
        "FROM scratch\nARG U\nENV X=${U:-unset}\n",
        &opts(&[]),
        "
target=0 levels=[[0]] skipped=[]
stage0 - base=scratch deps=[]
  ARG -> 
  ENV X=unset",
    );
}

#[test]
fn platform_args() {
    let o = PlanOptions {
        build_platform: Platform::parse("linux/amd64").unwrap(),
        target_platform: Platform::parse("linux/arm/v7").unwrap(),
        ..Default::default()
    };
    check(
        "FROM --platform=$BUILDPLATFORM busybox AS b\nENV X=$TARGETARCH\nARG TARGETARCH TARGETVARIANT BUILDOS\nENV Y=$TARGETARCH-$TARGETVARIANT-$BUILDOS\n",
        &o,
        "
target=0 levels=[[0]] skipped=[]
stage0 b base=busybox deps=[] platform=linux/amd64
  ENV X=
  ARG -> TARGETARCH=arm,TARGETVARIANT=v7,BUILDOS=linux
  ENV Y=arm-v7-linux",
    );
    check(
        "FROM img-${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-$TARGETVARIANT}\n",
        &o,
        "
target=0 levels=[[0]] skipped=[]
stage0 - base=img-linux-arm-v7 deps=[]",
    );
    assert!(Platform::parse("linux").is_err());
    assert_eq!(
        Platform::parse("Linux/ARM64/v8").unwrap().to_string(),
        "linux/arm64/v8"
    );
}

#[test]
fn stages_targets_and_levels() {
    let src = "\
FROM busybox AS base
FROM base AS a
ENV X=1
FROM base AS b
FROM scratch AS unused
FROM scratch
COPY --from=a /a /a
COPY --from=B /b /b
COPY --from=alpine:3 /etc/os-release /
";
    check(
        src,
        &opts(&[]),
        r#"
target=4 levels=[[0], [1, 2], [4]] skipped=[3]
stage0 base base=busybox deps=[]
stage1 a base=stage0 deps=[0]
  ENV X=1
stage2 b base=stage0 deps=[0]
stage4 - base=scratch deps=[1, 2] images=["alpine:3"]
  COPY ["/a"] /a from=a
  COPY ["/b"] /b from=B
  COPY ["/etc/os-release"] / from=alpine:3"#,
    );
    let mut o = opts(&[]);
    o.target = Some("A".into());
    check(
        src,
        &o,
        "
target=1 levels=[[0], [1]] skipped=[2, 3, 4]
stage0 base base=busybox deps=[]
stage1 a base=stage0 deps=[0]
  ENV X=1",
    );
    o.target = Some("nope".into());
    check(src, &o, r#"ERR target stage "nope" could not be found"#);
}

#[test]
fn env_inherited_from_parent_stage() {
    let mut o = opts(&[]);
    o.image_env.insert(
        "busybox".into(),
        vec![("PATH".into(), "/usr/bin:/bin".into())],
    );
    check(
        "FROM busybox AS one\nENV PATH=/opt:$PATH A=1\nFROM one\nENV B=$A$PATH\n",
        &o,
        "
target=1 levels=[[0], [1]] skipped=[]
stage0 one base=busybox deps=[]
  ENV PATH=/opt:/usr/bin:/bin A=1
stage1 - base=stage0 deps=[0]
  ENV B=1/opt:/usr/bin:/bin",
    );
}

#[test]
fn copy_from_index_and_mount_from() {
    check(
        "FROM scratch\nFROM scratch AS t\nFROM busybox\nARG ID=x\nRUN --mount=type=cache,target=/c,id=$ID --mount=type=bind,from=t,target=/t echo $ID\nCOPY --from=0 / /\n",
        &opts(&[]),
        r#"
target=2 levels=[[0, 1], [2]] skipped=[]
stage0 - base=scratch deps=[]
stage1 t base=scratch deps=[]
stage2 - base=busybox deps=[1, 0]
  ARG -> ID=x
  RUN Shell("echo $ID") mounts=["cache:/c:Some(\"x\")", "bind:/t:Some(\"t\")"] env=ID=x
  COPY ["/"] / from=0"#,
    );
    check(
        "FROM scratch\nCOPY --from=1 / /\nFROM scratch\n",
        &opts(&[]),
        "
target=1 levels=[[1]] skipped=[0]
stage1 - base=scratch deps=[]",
    );
    let mut o = opts(&[]);
    o.target = Some("x".into());
    check(
        "FROM scratch AS x\nCOPY --from=1 / /\nFROM scratch\n",
        &o,
        "ERR invalid from flag value 1: refers to current or later stage",
    );
}

#[test]
fn errors() {
    check(
        "FROM a AS x\nFROM b AS X\n",
        &opts(&[]),
        r#"ERR duplicate stage name "X", stage names should be unique"#,
    );
    check(
        "FROM x AS x\n",
        &opts(&[]),
        "ERR circular dependency detected on stage: x",
    );
    check(
        "FROM scratch AS a\nCOPY --from=b / /\nFROM a AS b\n",
        &opts(&[]),
        "ERR circular dependency detected on stage: b",
    );
    check(
        "ARG B\nFROM $B\n",
        &opts(&[]),
        "ERR base name ($B) should not be blank",
    );
    check(
        "FROM scratch\nARG R\nWORKDIR ${R:?R must be set}\n",
        &opts(&[]),
        "ERR failed to process \"${R:?R must be set}\": R: R must be set",
    );
    check(
        "FROM scratch\nENV A=\"x\n",
        &opts(&[]),
        "ERR failed to process \"\\\"x\": unexpected end of statement while looking for matching double-quote",
    );
    check(
        "FROM scratch\nARG T=x\nRUN --mount=type=cache,target=/c,uid=$T true\n",
        &opts(&[]),
        "ERR invalid --mount: invalid value for uid: \"x\"",
    );
    // Errors in stages the target does not need are not reported.
    check(
        "FROM scratch AS bad\nWORKDIR ${X:?}\nFROM scratch\n",
        &opts(&[]),
        "
target=1 levels=[[1]] skipped=[0]
stage1 - base=scratch deps=[]",
    );
}

#[test]
fn substitution_per_instruction() {
    check(
        "FROM scratch\nARG P=80 U=app D=/data S=SIGINT F=\"a.txt b.txt\" H=hi\n\
         EXPOSE $P ${P}/udp\nUSER $U\nVOLUME $D [$D]\nSTOPSIGNAL $S\nWORKDIR $D/w\n\
         COPY --chown=$U $F $D/\nCOPY <<EOF <<'RAW' /x/\n$H \"q\"\nEOF\n$H\nRAW\n\
         ADD --checksum=sha256:$H $D/f /\nRUN echo $H\nCMD echo $H\nONBUILD RUN echo $H\n",
        &opts(&[("HTTP_PROXY", "http://proxy"), ("P", "8080")]),
        r#"
target=0 levels=[[0]] skipped=[]
stage0 - base=scratch deps=[]
  ARG -> P=8080,U=app,D=/data,S=SIGINT,F=a.txt b.txt,H=hi,HTTP_PROXY=http://proxy
  EXPOSE ["8080", "8080/udp"]
  USER app
  VOLUME ["/data", "[/data]"]
  STOPSIGNAL SIGINT
  WORKDIR /data/w
  COPY ["a.txt b.txt"] /data/ chown=app
  COPY [] /x/ <<EOF="hi \"q\"\n" <<RAW="$H\n"
  ADD ["/data/f"] / checksum=Some("sha256:hi")
  RUN Shell("echo $H") mounts=[] env=P=8080,U=app,D=/data,S=SIGINT,F=a.txt b.txt,H=hi,HTTP_PROXY=http://proxy
  CMD
  ONBUILD"#,
    );
}

#[test]
fn escape_backtick_in_planner() {
    check(
        "# escape=`\nFROM scratch\nENV P=C:\\dir A=`$notvar\nWORKDIR $P\\sub\n",
        &opts(&[]),
        r#"
target=0 levels=[[0]] skipped=[]
stage0 - base=scratch deps=[]
  ENV P=C:\dir A=$notvar
  WORKDIR C:\dir\sub"#,
    );
}

#[test]
fn global_platform_arg_redeclared() {
    let o = PlanOptions {
        target_platform: Platform::parse("linux/arm64").unwrap(),
        ..Default::default()
    };
    check(
        "ARG TARGETARCH\nFROM img-$TARGETARCH\nARG TARGETARCH\nENV A=$TARGETARCH\n",
        &o,
        "
target=0 levels=[[0]] skipped=[]
stage0 - base=img-arm64 deps=[]
  ARG -> TARGETARCH=arm64
  ENV A=arm64",
    );
}

#[test]
fn env_pairs_use_previous_environment() {
    // The example from Docker's Dockerfile reference.
    check(
        "FROM scratch\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n",
        &opts(&[]),
        "
target=0 levels=[[0]] skipped=[]
stage0 - base=scratch deps=[]
  ENV abc=hello
  ENV abc=bye def=hello
  ENV ghi=bye",
    );
}
