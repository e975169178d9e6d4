//! What the registry reads inside a pushed manifest: the content it references (which must
//! already be in the repository), its subject and its referrers descriptor. Pure functions.

use serde_json::{Map, Value, json};
use strata_oci::Digest;

/// Largest manifest accepted, as the spec suggests (4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Layers with these media types live outside the registry (Windows base layers): they are
/// never pushed, so they are not required to exist.
const FOREIGN_LAYER_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// The references of a manifest that must exist before it is accepted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ManifestReferences {
    /// Config and layers (image manifests).
    pub blobs: Vec<Digest>,
    /// Child manifests (indexes).
    pub manifests: Vec<Digest>,
}

/// A parsed manifest, as far as the registry cares.
#[derive(Debug)]
pub struct ParsedManifest {
    pub json: Map<String, Value>,
    pub references: ManifestReferences,
    pub subject: Option<Digest>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not a JSON object: {0}")]
    NotJson(String),
    #[error("invalid descriptor in {field}: {reason}")]
    Descriptor { field: &'static str, reason: String },
}

fn descriptor_digest(field: &'static str, value: &Value) -> Result<Digest, ManifestError> {
    let text = value["digest"].as_str().ok_or(ManifestError::Descriptor {
        field,
        reason: "missing digest".into(),
    })?;
    text.parse().map_err(|error| ManifestError::Descriptor {
        field,
        reason: format!("{error}"),
    })
}

pub fn parse(bytes: &[u8]) -> Result<ParsedManifest, ManifestError> {
    let json: Map<String, Value> =
        serde_json::from_slice(bytes).map_err(|error| ManifestError::NotJson(error.to_string()))?;
    let mut references = ManifestReferences::default();
    if let Some(config) = json.get("config") {
        references.blobs.push(descriptor_digest("config", config)?);
    }
    if let Some(layers) = json.get("layers").and_then(Value::as_array) {
        for layer in layers {
            let foreign = layer["mediaType"]
                .as_str()
                .is_some_and(|media_type| FOREIGN_LAYER_TYPES.contains(&media_type));
            let digest = descriptor_digest("layers", layer)?;
            if !foreign {
                references.blobs.push(digest);
            }
        }
    }
    if let Some(manifests) = json.get("manifests").and_then(Value::as_array) {
        for manifest in manifests {
            references
                .manifests
                .push(descriptor_digest("manifests", manifest)?);
        }
    }
    let subject = json
        .get("subject")
        .map(|subject| descriptor_digest("subject", subject))
        .transpose()?;
    Ok(ParsedManifest {
        json,
        references,
        subject,
    })
}

/// The subject of stored manifest bytes, if any (used when deleting).
pub fn subject_of(bytes: &[u8]) -> Option<Digest> {
    parse(bytes).ok()?.subject
}

impl ParsedManifest {
    /// The `artifactType` of the referrers API: the manifest's own, else its config's media
    /// type (image manifests).
    pub fn artifact_type(&self) -> Option<&str> {
        self.json
            .get("artifactType")
            .and_then(Value::as_str)
            .or_else(|| self.json.get("config")?.get("mediaType")?.as_str())
    }

    /// The descriptor listed by the referrers API for this manifest.
    pub fn referrer_descriptor(&self, digest: &Digest, size: usize, media_type: &str) -> Value {
        let mut descriptor = json!({
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": size,
        });
        if let Some(artifact_type) = self.artifact_type() {
            descriptor["artifactType"] = artifact_type.into();
        }
        if let Some(annotations) = self.json.get("annotations") {
            descriptor["annotations"] = annotations.clone();
        }
        descriptor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifest_references_config_and_distributable_layers() {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.example+json", "digest": digest('a'), "size": 1},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest('b'), "size": 1},
                {"mediaType": FOREIGN_LAYER_TYPES[0], "digest": digest('c'), "size": 1},
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": digest('d'), "size": 1},
            "annotations": {"k": "v"},
        });
        let parsed = parse(manifest.to_string().as_bytes()).unwrap();
        let blobs: Vec<String> = parsed
            .references
            .blobs
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(blobs, [digest('a'), digest('b')]);
        assert_eq!(parsed.subject.as_ref().unwrap().to_string(), digest('d'));
        assert_eq!(parsed.artifact_type(), Some("application/vnd.example+json"));
        let own: Digest = digest('e').parse().unwrap();
        let descriptor = parsed.referrer_descriptor(&own, 10, OCI_MANIFEST);
        assert_eq!(descriptor["annotations"]["k"], "v");
        assert_eq!(descriptor["size"], 10);
    }

    #[test]
    fn index_references_manifests_and_bad_input_is_refused() {
        let index = json!({"schemaVersion": 2, "manifests": [{"digest": digest('f'), "size": 1}]});
        let parsed = parse(index.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.references.manifests.len(), 1);
        assert!(parse(b"[1]").is_err());
        assert!(parse(b"{\"config\":{\"digest\":\"md5:x\"}}").is_err());
    }
}
