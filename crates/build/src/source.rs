//! Where base images come from when the store does not have them (or `--pull` asks to check
//! again): an [`ImageSource`], implemented by whoever runs the build. The builder itself
//! speaks no registry protocol; the `strata` CLI implements this with its registry client, so
//! this crate does not depend on it.

use strata_oci::Platform;
use strata_store::Store;

/// Fetches images into the store for `FROM` and `COPY --from`/`RUN --mount from=` images.
pub trait ImageSource: Send + Sync + std::fmt::Debug {
    /// Pulls `reference` (as written in the Dockerfile, e.g. `busybox`,
    /// `127.0.0.1:5000/app:1`, `app@sha256:...`) for `platform` into `store`, recording it
    /// under that name so that it resolves afterwards. `log` receives one line per thing
    /// done (the manifest resolved, each layer fetched), shown under the build's
    /// `[internal] load metadata for ...` step. Errors say what failed, in one line.
    fn pull(
        &self,
        store: &Store,
        reference: &str,
        platform: &Platform,
        log: &dyn Fn(&str),
    ) -> Result<(), String>;
}

/// When the builder asks its [`ImageSource`] for an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Only when the store does not have it (Docker's default).
    #[default]
    Missing,
    /// Every time, so a newer image under the same tag replaces the stored one (`--pull`).
    Always,
}
