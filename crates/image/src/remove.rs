//! `strata tag` and `strata rmi`.

use std::collections::BTreeSet;

use strata_oci::{Digest, Reference};
use strata_store::{Catalog, Resolved, Store};

use crate::{ImageError, Result, gc};

/// Points `target` at the image `source` names.
pub fn tag(store: &Store, source: &str, target: &Reference) -> Result<()> {
    let target = target.clone().with_default_tag();
    if target.digest().is_some() {
        return Err(ImageError::Reference {
            input: target.to_string(),
            message: "a tag target cannot include a digest".into(),
        });
    }
    store.update::<_, ImageError>(|catalog| {
        let key = catalog.resolve(source)?.keys().remove(0);
        catalog.set_tag(&target, &key);
        if let Some(record) = catalog.images.get_mut(&key) {
            record.last_tag_time = Some(chrono::Utc::now());
        }
        Ok(())
    })?;
    Ok(())
}

/// What `rmi` did, line by line, as Docker prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Untagged(String),
    Deleted(Digest),
}

/// Untags or deletes what `input` names, with Docker's rules: a tag is removed, and the image
/// with it when that was its last tag; an image named by ID is deleted only when it has at
/// most one tag, unless `force`; an image other images were built on is kept unless `force`.
/// Blobs no longer needed by any image are removed afterwards.
pub fn remove_image(store: &Store, input: &str, force: bool) -> Result<Vec<Removal>> {
    let mut freed_candidates = Vec::new();
    let removals = store.update::<_, ImageError>(|catalog| {
        let resolved = catalog.resolve(input)?;
        let plan = plan_removal(catalog, &resolved, force)?;
        for removal in &plan {
            match removal {
                Removal::Untagged(reference) => {
                    let full = Reference::parse(reference)
                        .map(|r| r.to_string())
                        .unwrap_or_else(|_| reference.clone());
                    catalog.tags.remove(&full);
                }
                Removal::Deleted(config) => {
                    for key in catalog.keys_with_config(config) {
                        if let Some(record) = catalog.images.remove(&key) {
                            freed_candidates.push(record);
                        }
                    }
                    catalog.tags.retain(|_, k| catalog.images.contains_key(k));
                }
            }
        }
        Ok(plan)
    })?;
    if !freed_candidates.is_empty() {
        let mut blobs = BTreeSet::new();
        let mut scratch = Catalog::default();
        for record in freed_candidates {
            scratch.images.insert(record.target.digest.clone(), record);
        }
        blobs.extend(gc::referenced_blobs(store, &scratch));
        gc::remove_unreferenced(store, &blobs.into_iter().collect::<Vec<_>>())?;
    }
    Ok(removals)
}

fn plan_removal(catalog: &Catalog, resolved: &Resolved, force: bool) -> Result<Vec<Removal>> {
    let familiar = |t: &str| {
        Reference::parse(t)
            .map(|r| r.familiar_string())
            .unwrap_or_else(|_| t.to_string())
    };
    let (config, keys) = match resolved {
        Resolved::Tag { reference, key } => {
            let config = catalog.images[key].config.clone();
            let others = catalog
                .keys_with_config(&config)
                .iter()
                .flat_map(|k| catalog.tags_of(k))
                .count()
                - 1;
            let mut plan = vec![Removal::Untagged(familiar(reference))];
            if others == 0 {
                check_children(catalog, &config, force)?;
                plan.push(Removal::Deleted(config));
            }
            return Ok(plan);
        }
        Resolved::Id { config, keys } => (config.clone(), keys.clone()),
    };
    let tags: Vec<&str> = keys.iter().flat_map(|k| catalog.tags_of(k)).collect();
    if tags.len() > 1 && !force {
        return Err(ImageError::Conflict(format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            &config.hex()[..12]
        )));
    }
    check_children(catalog, &config, force)?;
    let mut plan: Vec<Removal> = tags
        .iter()
        .map(|t| Removal::Untagged(familiar(t)))
        .collect();
    plan.push(Removal::Deleted(config));
    Ok(plan)
}

fn check_children(catalog: &Catalog, config: &Digest, force: bool) -> Result<()> {
    let children = catalog.children_of(config);
    if !children.is_empty() && !force {
        return Err(ImageError::Conflict(format!(
            "conflict: unable to delete {} (cannot be forced) - image has dependent child images",
            &config.hex()[..12]
        )));
    }
    Ok(())
}
