//! Build-check tests: a Dockerfile and the expected `line Rule: message` lines.

use strata_dockerfile::{PlanOptions, check, is_secret_name, parse};

#[track_caller]
fn lint(src: &str, expected: &[&str]) {
    let df = parse(src).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<String> = check(&df, &PlanOptions::default())
        .iter()
        .map(|w| {
            format!(
                "{} {}{}: {}",
                w.line,
                w.rule,
                if w.error { "(error)" } else { "" },
                w.message
            )
        })
        .collect();
    assert_eq!(got, expected, "input:\n{src}");
}

#[test]
fn clean_file_has_no_warnings() {
    lint(
        "ARG BASE=busybox\nFROM $BASE AS build\nWORKDIR /src\nRUN echo $UNKNOWN_IN_RUN\nFROM scratch\nCOPY --from=build /src /\nCMD [\"/app\"]\n",
        &[],
    );
}

#[test]
fn casing_rules() {
    lint(
        "FROM a as Build\nrun true\nFROM b AS c\n",
        &[
            "1 StageNameCasing: Stage name 'Build' should be lowercase",
            "1 FromAsCasing: 'as' and 'FROM' keywords' casing do not match",
            "2 ConsistentInstructionCasing: Command 'run' should match the case of the command majority (uppercase)",
        ],
    );
    lint(
        "from a AS b\nrun true\ncopy a b\n",
        &["1 FromAsCasing: 'AS' and 'from' keywords' casing do not match"],
    );
    lint(
        "from a\nrun true\nCopy a b\n",
        &[
            "3 ConsistentInstructionCasing: Command 'Copy' should match the case of the command majority (lowercase)",
        ],
    );
}

#[test]
fn stage_name_rules() {
    lint(
        "FROM a AS x\nFROM b AS X\nFROM c AS scratch\n",
        &[
            "2 StageNameCasing: Stage name 'X' should be lowercase",
            "2 DuplicateStageName(error): Duplicate stage name \"X\", stage names should be unique",
            "3 ReservedStageName: Stage name should not use the same name as reserved stage \"scratch\"",
        ],
    );
}

#[test]
fn command_rules() {
    lint(
        "FROM a\nCMD echo a\nENTRYPOINT run\nCMD [\"b\"]\nHEALTHCHECK NONE\nHEALTHCHECK CMD true\nMAINTAINER me\nFROM b\nCMD [\"x\"]\n",
        &[
            "2 JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
            "2 MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used",
            "3 JSONArgsRecommended: JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals",
            "5 MultipleInstructionsDisallowed: Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used",
            "7 MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label",
        ],
    );
}

#[test]
fn variable_rules() {
    lint(
        "ARG VERSION=1\nFROM img:$VERSON\nFROM img:${MISSING:-ok}\nENV A=$AA\nARG TOKEN_NAME\nENV B=$TOKEN_NAM C=${UNSET:-x} D=$PATH\nCOPY $NOPE /\n",
        &[
            "2 UndefinedArgInFrom: FROM argument 'VERSON' is not declared (did you mean VERSION?)",
            "4 UndefinedVar: Usage of undefined variable '$AA'",
            "5 SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG \"TOKEN_NAME\")",
            "6 UndefinedVar: Usage of undefined variable '$TOKEN_NAM' (did you mean $TOKEN_NAME?)",
            "7 UndefinedVar: Usage of undefined variable '$NOPE'",
        ],
    );
    lint(
        "FROM a\nENV A=1\nFROM a\nENV B=$A\n",
        &["4 UndefinedVar: Usage of undefined variable '$A'"],
    );
    lint("FROM a AS p\nENV A=1\nFROM p\nENV B=$A\n", &[]);
    // As in BuildKit's docs: an ARG without default makes `a:` invalid.
    lint(
        "ARG TAG\nFROM a:$TAG\n",
        &[
            "2 InvalidDefaultArgInFrom: Default value for ARG a:$TAG results in empty or invalid base image name",
        ],
    );
    lint("ARG TAG=1\nFROM a:$TAG\n", &[]);
    lint(
        "ARG IMG=\nFROM ${IMG}\n",
        &[
            "2 InvalidDefaultArgInFrom: Default value for ARG ${IMG} results in empty or invalid base image name",
        ],
    );
}

#[test]
fn misc_rules() {
    lint(
        "FROM --platform=linux/amd64 a\nWORKDIR rel\nWORKDIR /abs\nWORKDIR rel2\nENV K V\nLABEL k v\nEXPOSE 80/TCP 81/udp\nFROM --platform=$TARGETPLATFORM b\nENV AWS_SECRET_ACCESS_KEY=x MY_PUBLIC_KEY=y KEYBOARD=z\nRUN echo \\\n\n  x\n",
        &[
            "1 FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value \"linux/amd64\"",
            "2 WorkdirRelativePath: Relative workdir \"rel\" can have unexpected results if the base image changes",
            "5 LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format",
            "6 LegacyKeyValueFormat: \"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format",
            "7 ExposeProtoCasing: Defined protocol '80/TCP' in EXPOSE instruction should be lowercase",
            "8 RedundantTargetPlatform: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
            "9 SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ENV \"AWS_SECRET_ACCESS_KEY\")",
            "11 NoEmptyContinuation: Empty continuation line",
        ],
    );
}

#[test]
fn check_directive() {
    lint("# check=skip=all\nFROM a as B\nMAINTAINER x\n", &[]);
    lint(
        "# check=skip=StageNameCasing,FromAsCasing;error=true\nFROM a as B\nMAINTAINER x\n",
        &[
            "3 MaintainerDeprecated(error): Maintainer instruction is deprecated in favor of using label",
        ],
    );
    // DuplicateStageName is an error and cannot be skipped.
    lint(
        "# check=skip=all\nFROM a AS x\nFROM a AS x\n",
        &["3 DuplicateStageName(error): Duplicate stage name \"x\", stage names should be unique"],
    );
}

#[test]
fn secret_names() {
    for (name, secret) in [
        ("PASSWORD", true),
        ("DB_PASSWORD", true),
        ("GITHUB_TOKEN", true),
        ("apikey", true),
        ("AWS_SECRET_ACCESS_KEY", true),
        ("MY_PUBLIC_KEY", false),
        ("KEYBOARD", false),
        ("AUTHOR", false),
        ("VERSION", false),
    ] {
        assert_eq!(is_secret_name(name), secret, "{name}");
    }
}
