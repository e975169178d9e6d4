use strata_oci::{Platform, PlatformError};

fn check_all<T>(cases: &[T], check: impl Fn(&T) -> Result<(), String>) {
    let failures: Vec<String> = cases.iter().filter_map(|case| check(case).err()).collect();
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn platform(specifier: &str) -> Platform {
    Platform::parse(specifier).unwrap_or_else(|e| panic!("{specifier:?}: {e}"))
}

#[test]
fn parse_normalises_like_containerd() {
    // (input, canonical Display form)
    let cases = [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("LINUX/AMD64", "linux/amd64"),
        ("linux/arm64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64/8", "linux/arm64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/aarch64/v8", "linux/arm64"),
        ("linux/arm64/v9", "linux/arm64/v9"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/arm/6", "linux/arm/v6"),
        ("linux/arm/5", "linux/arm/v5"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("linux/i686", "linux/386"),
        ("linux/386", "linux/386"),
        ("linux/ppc64le", "linux/ppc64le"),
        ("linux/s390x", "linux/s390x"),
        ("linux/riscv64", "linux/riscv64"),
        ("windows/amd64", "windows/amd64"),
        ("windows(10.0.17763)/amd64", "windows(10.0.17763)/amd64"),
        ("macos/arm64", "darwin/arm64"),
        ("darwin/arm64", "darwin/arm64"),
        // A lone architecture runs on Linux.
        ("arm64", "linux/arm64"),
        ("aarch64", "linux/arm64"),
        ("amd64", "linux/amd64"),
        ("x86_64", "linux/amd64"),
        ("armhf", "linux/arm/v7"),
        ("arm", "linux/arm/v7"),
        ("386", "linux/386"),
        // Unknown OS/architecture pairs are accepted, as in containerd.
        ("plan10/z80", "plan10/z80"),
    ];
    check_all(&cases, |&(input, expected)| {
        let parsed = Platform::parse(input).map_err(|e| format!("{input:?}: {e}"))?;
        if parsed.to_string() != expected {
            return Err(format!("{input:?}: got {parsed}, expected {expected}"));
        }
        let reparsed =
            Platform::parse(&parsed.to_string()).map_err(|e| format!("{input:?}: {e}"))?;
        if reparsed != parsed {
            return Err(format!("{input:?}: {parsed} reparses as {reparsed:?}"));
        }
        Ok(())
    });
}

#[test]
fn parse_fields() {
    let arm = platform("linux/arm/v7");
    assert_eq!(
        (
            arm.os.as_str(),
            arm.architecture.as_str(),
            arm.variant.as_deref()
        ),
        ("linux", "arm", Some("v7"))
    );
    let windows = platform("windows(10.0.17763)/amd64");
    assert_eq!(windows.os_version.as_deref(), Some("10.0.17763"));
    assert_eq!(windows.variant, None);
    assert_eq!(platform("linux/arm64"), platform("linux/arm64/v8"));
    assert_eq!(Platform::new("linux", "x86_64"), platform("linux/amd64"));
}

#[test]
fn lone_os_uses_the_host_architecture() {
    let host = Platform::host();
    let linux = platform("linux");
    assert_eq!(linux.os, "linux");
    assert_eq!(linux.architecture, host.architecture);
    assert_eq!(platform("windows").architecture, host.architecture);
}

#[test]
fn invalid_specifiers_are_rejected() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("linux/", "component \"\""),
        ("/amd64", "component \"\""),
        ("linux//v7", "component \"\""),
        ("linux/amd64/v3/extra", "found 4 components"),
        ("linux/*", "component \"*\""),
        ("linux/am d64", "component \"am d64\""),
        ("linux/amd64.", "component \"amd64.\""),
        ("notanarch", "unknown operating system or architecture"),
        ("windows(10 0)/amd64", "OS version \"10 0\""),
        ("windows10.0)/amd64", "component \"windows10.0)\""),
        ("arm64(1.0)", "unknown operating system or architecture"),
    ];
    check_all(cases, |&(input, message)| match Platform::parse(input) {
        Ok(parsed) => Err(format!("{input:?}: accepted as {parsed}")),
        Err(error) if error.to_string().contains(message) => Ok(()),
        Err(error) => Err(format!("{input:?}: {error} does not mention {message:?}")),
    });
    assert_eq!(Platform::parse(""), Err(PlatformError::Empty));
    assert!(
        Platform::parse("x/y/z/w")
            .unwrap_err()
            .to_string()
            .contains("\"x/y/z/w\"")
    );
}

#[test]
fn matching_follows_containerd_only() {
    // (wanted, candidate, expected rank)
    let cases: &[(&str, &str, Option<usize>)] = &[
        ("linux/amd64", "linux/amd64", Some(0)),
        ("linux/amd64", "linux/x86_64", Some(0)),
        ("linux/amd64", "linux/386", Some(1)),
        ("linux/amd64", "linux/amd64/v2", None),
        ("linux/amd64/v3", "linux/amd64/v3", Some(0)),
        ("linux/amd64/v3", "linux/amd64/v2", Some(1)),
        ("linux/amd64/v3", "linux/amd64", Some(2)),
        ("linux/amd64/v3", "linux/386", Some(3)),
        ("linux/amd64/v2", "linux/amd64/v3", None),
        ("linux/amd64", "linux/arm64", None),
        ("linux/amd64", "windows/amd64", None),
        ("linux/arm64", "linux/arm64/v8", Some(0)),
        ("linux/arm64/v8", "linux/arm64", Some(0)),
        ("linux/arm64", "linux/arm/v8", Some(1)),
        ("linux/arm64", "linux/arm/v7", Some(2)),
        ("linux/arm64", "linux/arm", Some(2)),
        ("linux/arm64", "linux/arm/v6", Some(3)),
        ("linux/arm64", "linux/arm/v5", Some(4)),
        ("linux/arm64", "linux/amd64", None),
        ("linux/arm64/v9", "linux/arm64", Some(1)),
        ("linux/arm/v7", "linux/arm/v7", Some(0)),
        ("linux/arm/v7", "linux/arm/v6", Some(1)),
        ("linux/arm/v7", "linux/arm/v5", Some(2)),
        ("linux/arm/v7", "linux/arm/v8", None),
        ("linux/arm/v7", "linux/arm64", None),
        ("linux/arm/v6", "linux/arm/v7", None),
        ("linux/arm/v6", "linux/arm", None),
        ("linux/armhf", "linux/arm/v7", Some(0)),
        ("linux/s390x", "linux/s390x", Some(0)),
        ("linux/s390x", "linux/ppc64le", None),
        ("windows/amd64", "windows(10.0.17763)/amd64", Some(0)),
    ];
    check_all(cases, |&(wanted, candidate, expected)| {
        let wanted_platform = Platform::parse(wanted).map_err(|e| e.to_string())?;
        let candidate_platform = Platform::parse(candidate).map_err(|e| e.to_string())?;
        let rank = wanted_platform.match_rank(&candidate_platform);
        if rank != expected || wanted_platform.matches(&candidate_platform) != expected.is_some() {
            return Err(format!(
                "{wanted} running {candidate}: got {rank:?}, expected {expected:?}"
            ));
        }
        Ok(())
    });
}

#[test]
fn matching_normalises_verbatim_fields() {
    let from_manifest = Platform {
        architecture: "ARM64".into(),
        os: "Linux".into(),
        os_version: None,
        os_features: Vec::new(),
        variant: Some("v8".into()),
    };
    assert!(platform("linux/arm64").matches(&from_manifest));
    assert_eq!(from_manifest.normalized(), platform("linux/arm64"));
}

#[test]
fn best_match_prefers_the_closest_platform() {
    let index = [
        platform("linux/386"),
        platform("linux/arm/v7"),
        platform("linux/amd64"),
        platform("linux/arm64"),
    ];
    assert_eq!(platform("linux/amd64").best_match(&index), Some(2));
    assert_eq!(platform("linux/arm64").best_match(&index), Some(3));
    assert_eq!(platform("linux/arm64").best_match(&index[..2]), Some(1));
    assert_eq!(platform("linux/s390x").best_match(&index), None);
}

#[test]
fn host_is_normalised_and_round_trips() {
    let host = Platform::host();
    assert_eq!(host, host.normalized());
    assert_eq!(platform(&host.to_string()), host);
    assert!(host.matches(&host));
}

#[test]
fn serde_uses_oci_field_names() {
    let windows = Platform {
        architecture: "amd64".into(),
        os: "windows".into(),
        os_version: Some("10.0.17763.1".into()),
        os_features: vec!["win32k".into()],
        variant: None,
    };
    let json = serde_json::to_string(&windows).unwrap();
    assert_eq!(
        json,
        r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1","os.features":["win32k"]}"#
    );
    assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), windows);

    let arm = platform("linux/arm/v6");
    let json = serde_json::to_string(&arm).unwrap();
    assert_eq!(
        json,
        r#"{"architecture":"arm","os":"linux","variant":"v6"}"#
    );
    assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), arm);

    // Empty and null optional fields, as some tools write them, read as absent.
    let sloppy: Platform = serde_json::from_str(
        r#"{"architecture":"amd64","os":"linux","variant":"","os.version":"","os.features":null}"#,
    )
    .unwrap();
    assert_eq!(sloppy, platform("linux/amd64"));
    assert!(serde_json::from_str::<Platform>(r#"{"os":"linux"}"#).is_err());
}

#[test]
fn converts_to_and_from_oci_spec() {
    let arm = platform("linux/arm/v7");
    let spec: strata_oci::spec::Platform = (&arm).into();
    assert_eq!(spec.architecture().to_string(), "arm");
    assert_eq!(spec.variant().as_deref(), Some("v7"));
    assert_eq!(Platform::from(&spec), arm);

    let spec_json = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<Platform>(&spec_json).unwrap(), arm);
}

#[test]
fn arbitrary_input_never_panics() {
    const PIECES: &[&str] = &[
        "linux", "arm", "arm64", "v7", "v8", "/", "(", ")", "1.0", "*", " ", "é", "X86_64", "",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..10_000 {
        let length = (next() % 8) as usize;
        let input: String = (0..length)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        if let Ok(parsed) = Platform::parse(&input) {
            assert_eq!(
                Platform::parse(&parsed.to_string()),
                Ok(parsed.clone()),
                "{input:?}"
            );
            assert!(parsed.matches(&parsed), "{input:?}");
        }
    }
}
