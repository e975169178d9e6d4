//! The catalog's persistence in `meta.redb`. Each operation opens the database, runs one
//! transaction and closes it, under `meta.lock`, so concurrent strata processes queue instead of
//! failing on the database's single-process lock.

use std::collections::BTreeMap;
use std::path::PathBuf;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_oci::Digest;

use crate::{Catalog, FORMAT_VERSION, Result, Store, StoreError};

const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
const IMAGES: TableDefinition<&str, &str> = TableDefinition::new("images");
const LAYERS: TableDefinition<&str, &str> = TableDefinition::new("layers");
const SNAPSHOTS: TableDefinition<&str, &str> = TableDefinition::new("snapshots");
const BUILD_CACHE: TableDefinition<&str, &str> = TableDefinition::new("build_cache");
const INFO: TableDefinition<&str, &str> = TableDefinition::new("info");

const FORMAT_KEY: &str = "format_version";

fn db_path(store: &Store) -> PathBuf {
    store.root.join("meta.redb")
}

fn open(store: &Store) -> Result<redb::Database> {
    let path = db_path(store);
    redb::Database::create(&path).map_err(|e| StoreError::db(&path, e))
}

/// Stamps a new store with the format version, or checks an existing one's.
pub(crate) fn check_format(store: &Store) -> Result<()> {
    let _lock = store.lock_meta()?;
    let path = db_path(store);
    // The common case, an existing store of this version, needs no write.
    if let Ok(db) = redb::ReadOnlyDatabase::open(&path)
        && let Ok(txn) = db.begin_read()
        && let Ok(info) = txn.open_table(INFO)
        && let Ok(Some(v)) = info.get(FORMAT_KEY)
        && v.value() == FORMAT_VERSION.to_string()
    {
        return Ok(());
    }
    let db = open(store)?;
    let txn = db.begin_write().map_err(|e| StoreError::db(&path, e))?;
    {
        let mut info = txn.open_table(INFO).map_err(|e| StoreError::db(&path, e))?;
        let found = info
            .get(FORMAT_KEY)
            .map_err(|e| StoreError::db(&path, e))?
            .map(|v| v.value().to_string());
        match found {
            Some(v) if v == FORMAT_VERSION.to_string() => return Ok(()),
            Some(v) => {
                return Err(StoreError::FormatVersion {
                    root: store.root.clone(),
                    found: v,
                    supported: FORMAT_VERSION,
                });
            }
            None => {
                info.insert(FORMAT_KEY, FORMAT_VERSION.to_string().as_str())
                    .map_err(|e| StoreError::db(&path, e))?;
            }
        }
    }
    txn.commit().map_err(|e| StoreError::db(&path, e))
}

fn read_map<T: ReadableTable<&'static str, &'static str>, V: DeserializeOwned>(
    path: &std::path::Path,
    table: &T,
) -> Result<BTreeMap<Digest, V>> {
    let mut map = BTreeMap::new();
    for item in table.iter().map_err(|e| StoreError::db(path, e))? {
        let (key, value) = item.map_err(|e| StoreError::db(path, e))?;
        let corrupt = |message: String| StoreError::CorruptRecord {
            key: key.value().to_string(),
            message,
        };
        let digest: Digest = key
            .value()
            .parse()
            .map_err(|e: strata_oci::DigestError| corrupt(e.to_string()))?;
        let record: V = serde_json::from_str(value.value()).map_err(|e| corrupt(e.to_string()))?;
        map.insert(digest, record);
    }
    Ok(map)
}

fn read_catalog<T: ReadableTable<&'static str, &'static str>>(
    path: &std::path::Path,
    tags: &T,
    images: &T,
    layers: &T,
    snapshots: Option<&T>,
    build_cache: Option<&T>,
) -> Result<Catalog> {
    let mut catalog = Catalog::default();
    for item in tags.iter().map_err(|e| StoreError::db(path, e))? {
        let (key, value) = item.map_err(|e| StoreError::db(path, e))?;
        let digest = value
            .value()
            .parse()
            .map_err(|e: strata_oci::DigestError| StoreError::CorruptRecord {
                key: key.value().to_string(),
                message: e.to_string(),
            })?;
        catalog.tags.insert(key.value().to_string(), digest);
    }
    catalog.images = read_map(path, images)?;
    catalog.layers = read_map(path, layers)?;
    if let Some(snapshots) = snapshots {
        catalog.snapshots = read_map(path, snapshots)?;
    }
    if let Some(build_cache) = build_cache {
        catalog.build_cache = read_map(path, build_cache)?;
    }
    Ok(catalog)
}

pub(crate) fn load(store: &Store) -> Result<Catalog> {
    let _lock = store.lock_meta()?;
    load_locked(store)
}

/// [`load`] for a caller that holds the metadata lock.
fn load_locked(store: &Store) -> Result<Catalog> {
    let path = db_path(store);
    // Read-only opening writes nothing (a writable open stamps the file, with fsyncs); a
    // database that needs recovery first takes the writable path.
    let txn = match redb::ReadOnlyDatabase::open(&path) {
        Ok(db) => db.begin_read(),
        Err(_) => open(store)?.begin_read(),
    }
    .map_err(|e| StoreError::db(&path, e))?;
    let open_table = |def| match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(StoreError::db(&path, e)),
    };
    let snapshots = open_table(SNAPSHOTS)?;
    let build_cache = open_table(BUILD_CACHE)?;
    match (open_table(TAGS)?, open_table(IMAGES)?, open_table(LAYERS)?) {
        (Some(tags), Some(images), Some(layers)) => read_catalog(
            &path,
            &tags,
            &images,
            &layers,
            snapshots.as_ref(),
            build_cache.as_ref(),
        ),
        _ => Ok(Catalog::default()),
    }
}

pub(crate) fn update<T, E: From<StoreError>>(
    store: &Store,
    change: impl FnOnce(&mut Catalog) -> Result<T, E>,
    after_commit: impl FnOnce(&Catalog) -> Result<()>,
) -> Result<T, E> {
    let _lock = store.lock_meta()?;
    // Under the lock nobody else writes, so the catalog read here is what the write
    // transaction below would read. A change that changes nothing opens nothing for writing
    // (a writable open alone stamps the file, with fsyncs).
    let before = load_locked(store)?;
    let mut after = before.clone();
    let value = change(&mut after)?;
    if after == before {
        return Ok(value);
    }
    let path = db_path(store);
    let db = open(store)?;
    let txn = db.begin_write().map_err(|e| StoreError::db(&path, e))?;
    {
        let mut tags = txn.open_table(TAGS).map_err(|e| StoreError::db(&path, e))?;
        let mut images = txn
            .open_table(IMAGES)
            .map_err(|e| StoreError::db(&path, e))?;
        let mut layers = txn
            .open_table(LAYERS)
            .map_err(|e| StoreError::db(&path, e))?;
        let mut snapshots = txn
            .open_table(SNAPSHOTS)
            .map_err(|e| StoreError::db(&path, e))?;
        let mut build_cache = txn
            .open_table(BUILD_CACHE)
            .map_err(|e| StoreError::db(&path, e))?;
        write_diff(&path, &mut tags, &before.tags, &after.tags, |d| {
            Ok(d.to_string())
        })?;
        write_diff(&path, &mut images, &before.images, &after.images, to_json)?;
        write_diff(&path, &mut layers, &before.layers, &after.layers, to_json)?;
        write_diff(
            &path,
            &mut snapshots,
            &before.snapshots,
            &after.snapshots,
            to_json,
        )?;
        write_diff(
            &path,
            &mut build_cache,
            &before.build_cache,
            &after.build_cache,
            to_json,
        )?;
    }
    txn.commit().map_err(|e| StoreError::db(&path, e))?;
    after_commit(&after)?;
    Ok(value)
}

fn to_json<V: Serialize>(value: &V) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::CorruptRecord {
        key: String::new(),
        message: e.to_string(),
    })
}

fn write_diff<K: Ord + ToString, V: PartialEq>(
    path: &std::path::Path,
    table: &mut redb::Table<&str, &str>,
    before: &BTreeMap<K, V>,
    after: &BTreeMap<K, V>,
    encode: impl Fn(&V) -> Result<String>,
) -> Result<()> {
    for key in before.keys().filter(|k| !after.contains_key(k)) {
        table
            .remove(key.to_string().as_str())
            .map_err(|e| StoreError::db(path, e))?;
    }
    for (key, value) in after {
        if before.get(key) != Some(value) {
            table
                .insert(key.to_string().as_str(), encode(value)?.as_str())
                .map_err(|e| StoreError::db(path, e))?;
        }
    }
    Ok(())
}
