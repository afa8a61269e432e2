//! Opening the RocksDB database: options, column families, the schema-version check.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Options,
};

use crate::config::StorageConfig;
use crate::error::{StorageError, StorageResult};
use crate::schema::{
    CF_BLOCKS, CF_META, COLUMN_FAMILIES, MetaKey, SCHEMA_VERSION, UPGRADABLE_SCHEMA_VERSION,
};

/// Bloom filter bits per key for point lookups (UTXOs, headers).
const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// Options shared by the database and every column family. `cache` is the one block cache all
/// column families share, so `block_cache_bytes` bounds them together.
fn options(config: &StorageConfig, cache: &Cache) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_open_files(config.max_open_files);
    opts.set_write_buffer_size(config.write_buffer_bytes);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_keep_log_file_num(4);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
    opts.set_block_based_table_factory(&table);
    opts
}

/// Options of one column family: [`options`], except that block bodies are stored
/// uncompressed. They are hashes, keys and signatures, which LZ4 cannot shrink; compressing
/// them only cost RocksDB's background threads CPU while a sync verifies signatures on the same
/// cores (as Bitcoin Core, which keeps its block files raw).
fn cf_options(name: &str, config: &StorageConfig, cache: &Cache) -> Options {
    let mut opts = options(config, cache);
    if name == CF_BLOCKS {
        opts.set_compression_type(DBCompressionType::None);
    }
    opts
}

/// Whether `dir` already holds a RocksDB database.
fn db_exists(dir: &Path) -> bool {
    dir.join("CURRENT").exists()
}

/// Opens (or creates) the database in `dir`. An existing database with other column families
/// or another schema version is refused with [`StorageError::SchemaMismatch`] before anything in
/// it is modified. Returns the database and whether it is fresh (no schema version written yet).
pub(crate) fn open_db(dir: &Path, config: &StorageConfig) -> StorageResult<(DB, bool)> {
    let cache = Cache::new_lru_cache(config.block_cache_bytes);
    let mut opts = options(config, &cache);
    // Every column family's memtables together; past it RocksDB flushes the largest. Without
    // it each of the 13 could hold `write_buffer_bytes` twice over.
    opts.set_db_write_buffer_size(config.total_write_buffer_bytes);
    let dir_name = dir.display().to_string();
    // A crash while the database is first created can leave only some of our column families
    // (RocksDB creates them one by one); that is a fresh database, finished below. Any column
    // family we do not know means another layout: refused before anything is modified.
    let mut partial = false;
    if db_exists(dir) {
        let found = DB::list_cf(&opts, dir)?;
        let unknown: Vec<&String> = found
            .iter()
            .filter(|c| *c != "default" && !COLUMN_FAMILIES.contains(&c.as_str()))
            .collect();
        if !unknown.is_empty() {
            return Err(StorageError::SchemaMismatch {
                dir: dir_name,
                found: format!("unknown layout (column families {unknown:?})"),
                expected: SCHEMA_VERSION,
            });
        }
        partial = COLUMN_FAMILIES
            .iter()
            .any(|c| !found.iter().any(|f| f == c));
        if partial {
            // Only an empty, half-created Cairn database may be completed: nothing may be stored
            // yet (Cairn never writes to `default`, and `meta` gets its first key atomically
            // with genesis once every column family exists).
            let ro = DB::open_cf_for_read_only(&opts, dir, &found, false)?;
            let mut has_data = ro.iterator(rocksdb::IteratorMode::Start).next().is_some();
            for name in found.iter().filter(|c| *c != "default") {
                if let Some(h) = ro.cf_handle(name) {
                    has_data |= ro
                        .iterator_cf(h, rocksdb::IteratorMode::Start)
                        .next()
                        .is_some();
                }
            }
            if has_data {
                return Err(StorageError::SchemaMismatch {
                    dir: dir_name,
                    found: format!("unknown layout (column families {found:?}, with data)"),
                    expected: SCHEMA_VERSION,
                });
            }
        }
    }
    let cfs = COLUMN_FAMILIES
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name, config, &cache)));
    let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
    let meta = cf(&db, CF_META)?;
    match db.get_cf(meta, MetaKey::SchemaVersion.key())? {
        Some(bytes) => {
            let version = <[u8; 4]>::try_from(bytes.as_slice())
                .map(u32::from_le_bytes)
                .ok();
            if version == Some(UPGRADABLE_SCHEMA_VERSION) && !partial {
                upgrade_from_v2(&db)?;
                tracing::info!(
                    from = UPGRADABLE_SCHEMA_VERSION,
                    to = SCHEMA_VERSION,
                    "upgraded the chain database"
                );
                return Ok((db, false));
            }
            if version != Some(SCHEMA_VERSION) || partial {
                return Err(StorageError::SchemaMismatch {
                    dir: dir_name,
                    found: version.map_or_else(
                        || format!("unreadable ({} bytes)", bytes.len()),
                        |v| v.to_string(),
                    ),
                    expected: SCHEMA_VERSION,
                });
            }
            Ok((db, false))
        }
        None => {
            // No version: fresh, or a crash before the first batch committed (which writes the
            // version atomically with genesis). Anything else in `meta` means a foreign layout.
            let has_any = db
                .iterator_cf(meta, rocksdb::IteratorMode::Start)
                .next()
                .is_some();
            if has_any {
                return Err(StorageError::SchemaMismatch {
                    dir: dir_name,
                    found: "none".into(),
                    expected: SCHEMA_VERSION,
                });
            }
            Ok((db, true))
        }
    }
}

/// Version 2 wrote every index entry in its block's batch: its indexes cover its tip. One
/// atomic batch records that and the new version.
fn upgrade_from_v2(db: &DB) -> StorageResult<()> {
    let meta = cf(db, CF_META)?;
    let tip = db
        .get_cf(meta, MetaKey::Tip.key())?
        .ok_or_else(|| StorageError::corrupt("tip", "meta", "missing"))?;
    let mut batch = rocksdb::WriteBatch::default();
    batch.put_cf(meta, MetaKey::IndexTip.key(), &tip);
    batch.put_cf(meta, MetaKey::UtxoTip.key(), &tip);
    batch.put_cf(
        meta,
        MetaKey::SchemaVersion.key(),
        SCHEMA_VERSION.to_le_bytes(),
    );
    db.write(batch)?;
    Ok(())
}

/// The handle of a column family the database was opened with.
pub(crate) fn cf<'a>(db: &'a DB, name: &'static str) -> StorageResult<&'a ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| StorageError::corrupt("column family", name, "missing"))
}
