//! Where base images come from when the store does not have them (or `--pull` asks to check
//! again): an [`ImageSource`], implemented by whoever runs the build. The builder itself
//! speaks no registry protocol; the `strata` CLI implements this with its registry client, so
//! this crate does not depend on it.

use std::time::Instant;

use strata_oci::{Platform, Reference};
use strata_store::Store;

use crate::progress::{Event, Progress};

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

/// Pulls `reference` through `source` as BuildKit's `[internal] load metadata for REF` step.
pub(crate) fn pull_image(
    store: &Store,
    source: &dyn ImageSource,
    reference: &str,
    vertex: usize,
    progress: &dyn Progress,
) -> std::result::Result<(), String> {
    let shown = Reference::parse(reference)
        .map(|r| r.with_default_tag().to_string())
        .unwrap_or_else(|_| reference.to_string());
    let name = format!("[internal] load metadata for {shown}");
    progress.event(&Event::Started {
        vertex,
        name: &name,
    });
    let started = Instant::now();
    let log = |line: &str| {
        progress.event(&Event::Log {
            vertex,
            elapsed: started.elapsed(),
            line,
        })
    };
    match source.pull(store, reference, &Platform::host(), &log) {
        Ok(()) => {
            progress.event(&Event::Done {
                vertex,
                elapsed: started.elapsed(),
            });
            Ok(())
        }
        Err(message) => {
            let message = format!("failed to resolve source metadata for {shown}: {message}");
            progress.event(&Event::Error {
                vertex,
                message: &message,
            });
            Err(message)
        }
    }
}
