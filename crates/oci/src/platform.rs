//! Target platforms (`linux/arm64`, `linux/arm/v7`, `windows/amd64`):
//! parsing, normalisation and matching, following containerd's `platforms`
//! package.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// The operating system, architecture and CPU variant an image runs on,
/// serialised with the OCI field names.
///
/// Fields are public so that platforms read from manifests can be kept
/// verbatim; [`Platform::parse`] and [`Platform::normalized`] produce the
/// canonical spelling, in which equal platforms compare equal.
// Field order follows the OCI Go structs so that JSON we write matches theirs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_string_as_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub os_features: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_string_as_none"
    )]
    pub variant: Option<String>,
}

/// Why a platform specifier was rejected. Variants carry the rejected input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error(
        "invalid platform: the specifier is empty (expected os/arch[/variant], e.g. \"linux/amd64\")"
    )]
    Empty,
    #[error(
        "invalid platform {input:?}: component {component:?} must be non-empty and contain \
         only letters, digits, '_' and '-'"
    )]
    InvalidComponent { input: String, component: String },
    #[error(
        "invalid platform {input:?}: OS version {os_version:?} may only contain letters, digits, '_', '.' and '-'"
    )]
    InvalidOsVersion { input: String, os_version: String },
    #[error("invalid platform {input:?}: expected os/arch[/variant], found {count} components")]
    TooManyComponents { input: String, count: usize },
    #[error("invalid platform {input:?}: unknown operating system or architecture")]
    Unknown { input: String },
}

/// Operating systems known to Go (`GOOS`), which names platforms in image indexes.
const KNOWN_OSES: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

/// Architectures known to Go (`GOARCH`).
const KNOWN_ARCHITECTURES: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

/// The OS assumed when only an architecture is given: images are overwhelmingly Linux.
const DEFAULT_OS: &str = "linux";

impl Platform {
    /// A platform from OS and architecture (normalised, e.g. `x86_64` becomes `amd64`).
    pub fn new(os: &str, architecture: &str) -> Platform {
        Platform {
            architecture: architecture.to_owned(),
            os: os.to_owned(),
            os_version: None,
            os_features: Vec::new(),
            variant: None,
        }
        .normalized()
    }

    /// Parses `os[(os.version)][/arch[/variant]]` or a lone architecture,
    /// normalising the result (see [`Platform::normalized`]).
    ///
    /// A lone component is an OS if it is a known one (the architecture is then
    /// the host's), otherwise an architecture on `linux`.
    pub fn parse(specifier: &str) -> Result<Platform, PlatformError> {
        if specifier.is_empty() {
            return Err(PlatformError::Empty);
        }
        let components: Vec<&str> = specifier.split('/').collect();
        if components.len() > 3 {
            return Err(PlatformError::TooManyComponents {
                input: specifier.to_owned(),
                count: components.len(),
            });
        }

        let (first, os_version) = split_os_version(specifier, components[0])?;
        for component in std::iter::once(first).chain(components[1..].iter().copied()) {
            if !is_valid_component(component) {
                return Err(PlatformError::InvalidComponent {
                    input: specifier.to_owned(),
                    component: component.to_owned(),
                });
            }
        }

        let mut platform = match components[..] {
            [_] => {
                let lowered = first.to_ascii_lowercase();
                let os = normalize_os(&lowered);
                if KNOWN_OSES.contains(&os.as_str()) {
                    Platform {
                        os,
                        ..Platform::host()
                    }
                } else {
                    let (architecture, variant) = normalize_architecture(&lowered, None);
                    if os_version.is_some() || !KNOWN_ARCHITECTURES.contains(&architecture.as_str())
                    {
                        return Err(PlatformError::Unknown {
                            input: specifier.to_owned(),
                        });
                    }
                    Platform {
                        architecture,
                        os: DEFAULT_OS.to_owned(),
                        os_version: None,
                        os_features: Vec::new(),
                        variant,
                    }
                }
            }
            [_, architecture] => Platform {
                architecture: architecture.to_owned(),
                os: first.to_owned(),
                os_version: None,
                os_features: Vec::new(),
                variant: None,
            },
            [_, architecture, variant] => Platform {
                architecture: architecture.to_owned(),
                os: first.to_owned(),
                os_version: None,
                os_features: Vec::new(),
                variant: Some(variant.to_owned()),
            },
            // `split` yields at least one item and the length was bounded above.
            _ => {
                return Err(PlatformError::TooManyComponents {
                    input: specifier.to_owned(),
                    count: components.len(),
                });
            }
        };
        platform.os_version = os_version.map(str::to_owned);
        Ok(platform.normalized())
    }

    /// The platform this program was compiled for, named as in image indexes.
    ///
    /// 32-bit ARM is reported as `v7`: the actual CPU variant would need
    /// `/proc/cpuinfo`, and this crate does no I/O.
    pub fn host() -> Platform {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        let little_endian = cfg!(target_endian = "little");
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "loongarch64" => "loong64",
            "powerpc" => "ppc",
            "powerpc64" if little_endian => "ppc64le",
            "powerpc64" => "ppc64",
            "mips" if little_endian => "mipsle",
            "mips64" if little_endian => "mips64le",
            other => other,
        };
        Platform::new(os, architecture)
    }

    /// The canonical spelling of this platform, as containerd's `Normalize`:
    /// lower case; `macos` → `darwin`; `x86_64`/`x86-64` → `amd64` (variant
    /// `v1` dropped); `i386`/`i686` → `386`; `aarch64` → `arm64` with `v8`
    /// dropped (so `arm64` and `arm64/v8` are equal); `armhf` → `arm/v7`;
    /// `armel` → `arm/v6`; `arm` without variant → `arm/v7`; empty strings
    /// become `None`.
    pub fn normalized(&self) -> Platform {
        let (architecture, variant) = normalize_architecture(
            &self.architecture.to_ascii_lowercase(),
            self.variant
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref(),
        );
        Platform {
            architecture,
            os: normalize_os(&self.os.to_ascii_lowercase()),
            os_version: self
                .os_version
                .clone()
                .filter(|version| !version.is_empty()),
            os_features: self.os_features.clone(),
            variant,
        }
    }

    /// Whether an image built for `candidate` can run on `self` (containerd's
    /// `platforms.Only`). See [`Platform::match_rank`] for the rules.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.match_rank(candidate).is_some()
    }

    /// How well `candidate` suits `self`: `Some(0)` for the same platform,
    /// larger numbers for increasingly less preferred compatible platforms,
    /// `None` when it cannot run.
    ///
    /// Both sides are normalised and the OS must be equal; `os.version` and
    /// `os.features` are ignored. Beyond an exact match, as in containerd:
    /// - `amd64/vN` also runs `amd64/v(N-1)` … `amd64` (v1), then `386`;
    /// - `arm64` also runs 32-bit `arm/v8`, `v7`, `v6`, `v5`;
    /// - `arm/vN` also runs `arm/v(N-1)` … `arm/v5`.
    pub fn match_rank(&self, candidate: &Platform) -> Option<usize> {
        let wanted = self.normalized();
        let candidate = candidate.normalized();
        if wanted.os != candidate.os {
            return None;
        }
        compatible_architectures(&wanted.architecture, wanted.variant.as_deref())
            .iter()
            .position(|(architecture, variant)| {
                *architecture == candidate.architecture && *variant == candidate.variant
            })
    }

    /// Index of the candidate best suited to `self` (lowest [`Platform::match_rank`],
    /// earliest on ties), e.g. to pick a manifest from an image index.
    pub fn best_match<'a>(
        &self,
        candidates: impl IntoIterator<Item = &'a Platform>,
    ) -> Option<usize> {
        candidates
            .into_iter()
            .enumerate()
            .filter_map(|(index, candidate)| Some((self.match_rank(candidate)?, index)))
            .min()
            .map(|(_, index)| index)
    }
}

/// Splits `windows(10.0.17763)` into OS and OS version.
fn split_os_version<'a>(
    specifier: &str,
    first: &'a str,
) -> Result<(&'a str, Option<&'a str>), PlatformError> {
    let Some(without_paren) = first.strip_suffix(')') else {
        return Ok((first, None));
    };
    let Some((os, os_version)) = without_paren.split_once('(') else {
        return Err(PlatformError::InvalidComponent {
            input: specifier.to_owned(),
            component: first.to_owned(),
        });
    };
    let valid_version = os_version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid_version {
        return Err(PlatformError::InvalidOsVersion {
            input: specifier.to_owned(),
            os_version: os_version.to_owned(),
        });
    }
    Ok((os, Some(os_version).filter(|version| !version.is_empty())))
}

fn is_valid_component(component: &str) -> bool {
    !component.is_empty()
        && component
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// Expects lower-case input.
fn normalize_os(os: &str) -> String {
    match os {
        "macos" => "darwin".to_owned(),
        other => other.to_owned(),
    }
}

/// containerd's `normalizeArch`, plus `i686`. Expects lower-case input.
fn normalize_architecture(architecture: &str, variant: Option<&str>) -> (String, Option<String>) {
    let variant = variant.filter(|variant| !variant.is_empty());
    let (architecture, variant) = match (architecture, variant) {
        ("i386" | "i686" | "386", _) => ("386", None),
        ("x86_64" | "x86-64" | "amd64", Some("v1")) => ("amd64", None),
        ("x86_64" | "x86-64" | "amd64", variant) => ("amd64", variant),
        ("aarch64" | "arm64", Some("8" | "v8" | "v8.0")) => ("arm64", None),
        ("aarch64" | "arm64", Some("9" | "9.0" | "v9.0")) => ("arm64", Some("v9")),
        ("aarch64" | "arm64", variant) => ("arm64", variant),
        ("armhf", _) => ("arm", Some("v7")),
        ("armel", _) => ("arm", Some("v6")),
        ("arm", None | Some("7")) => ("arm", Some("v7")),
        ("arm", Some("5")) => ("arm", Some("v5")),
        ("arm", Some("6")) => ("arm", Some("v6")),
        ("arm", Some("8")) => ("arm", Some("v8")),
        (architecture, variant) => (architecture, variant),
    };
    (architecture.to_owned(), variant.map(str::to_owned))
}

/// The `(architecture, variant)` pairs that run on the given normalised
/// platform, best first.
fn compatible_architectures(
    architecture: &str,
    variant: Option<&str>,
) -> Vec<(String, Option<String>)> {
    let mut compatible = vec![(architecture.to_owned(), variant.map(str::to_owned))];
    let level = |variant: Option<&str>| -> Option<u32> { variant?.strip_prefix('v')?.parse().ok() };
    match architecture {
        "amd64" => {
            // Microarchitecture levels are cumulative; v1 is spelled without variant.
            let top = level(variant).unwrap_or(1);
            for lower in (2..top).rev() {
                compatible.push(("amd64".to_owned(), Some(format!("v{lower}"))));
            }
            if top > 1 {
                compatible.push(("amd64".to_owned(), None));
            }
            compatible.push(("386".to_owned(), None));
        }
        "arm64" => {
            if variant.is_some() {
                compatible.push(("arm64".to_owned(), None));
            }
            // AArch64 CPUs execute 32-bit ARM code up to ARMv8.
            for lower in (5..=8).rev() {
                compatible.push(("arm".to_owned(), Some(format!("v{lower}"))));
            }
        }
        "arm" => {
            if let Some(top) = level(variant) {
                for lower in (5..top).rev() {
                    compatible.push(("arm".to_owned(), Some(format!("v{lower}"))));
                }
            }
        }
        _ => {}
    }
    compatible
}

impl fmt::Display for Platform {
    /// `os[(os.version)]/architecture[/variant]`, which [`Platform::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.os)?;
        if let Some(os_version) = &self.os_version {
            write!(f, "({os_version})")?;
        }
        write!(f, "/{}", self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(specifier: &str) -> Result<Self, Self::Err> {
        Platform::parse(specifier)
    }
}

impl From<&crate::spec::Platform> for Platform {
    fn from(platform: &crate::spec::Platform) -> Self {
        Platform {
            architecture: platform.architecture().to_string(),
            os: platform.os().to_string(),
            os_version: platform.os_version().clone(),
            os_features: platform.os_features().clone().unwrap_or_default(),
            variant: platform.variant().clone(),
        }
    }
}

impl From<&Platform> for crate::spec::Platform {
    fn from(platform: &Platform) -> Self {
        let mut spec = crate::spec::Platform::default();
        spec.set_architecture(platform.architecture.as_str().into())
            .set_os(platform.os.as_str().into())
            .set_os_version(platform.os_version.clone())
            .set_os_features(Some(platform.os_features.clone()).filter(|f| !f.is_empty()))
            .set_variant(platform.variant.clone());
        spec
    }
}

fn empty_string_as_none<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value.filter(|value| !value.is_empty()))
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default())
}
