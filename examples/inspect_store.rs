//! Prints what a stopped node's LMDB store holds about sync and epochs, per database: the
//! epochs, the knowledge (scopes and device entries), the record marks, the epoch notices
//! announced and taken, and the bytes of each kind of key. `scripts/crash-loop` runs it on
//! both nodes after its loop to show what hundreds of epochs leave behind.
//!
//!     cargo run --release --example inspect_store -- DATA_DIR [DATA_DIR...]

use std::collections::BTreeMap;

use syncbase::config::Config;
use syncbase::names::DbName;
use syncbase::store::Store;
use syncbase_storage::Scan;

fn main() -> anyhow::Result<()> {
    for dir in std::env::args().skip(1) {
        let config = Config {
            data_dir: dir.clone().into(),
            ..Config::default()
        };
        let storage = syncbase_storage::open(&config.storage_config())?;
        let store = Store::open(storage.clone(), syncbase::env::Env::system())?;
        println!("{dir}: {} epochs", store.epochs()?.len());
        for name in store.list_databases()? {
            let db = DbName::parse(&name)?;
            let knowledge = store.knowledge(&db)?;
            let entries: usize = knowledge.iter().map(|(_, vector)| vector.len()).sum();
            println!(
                "  {name}: knowledge {} scopes, {entries} device entries; notices announced {}, taken {}",
                knowledge.len(),
                store.announced_notices(&db)?.len(),
                store.taken_notices(&db)?.len(),
            );
            let prefix = [b"d\xfe".as_slice(), name.as_bytes(), b"\xfe"].concat();
            let mut kinds = BTreeMap::<char, (usize, usize)>::new();
            storage.read()?.scan_prefix(&prefix, &mut |key, value| {
                let kind = key.get(prefix.len()).map_or('?', |&b| b as char);
                let entry = kinds.entry(kind).or_default();
                entry.0 += 1;
                entry.1 += key.len() + value.len();
                Ok(Scan::Continue)
            })?;
            let kinds: Vec<String> = kinds
                .iter()
                .map(|(kind, (count, bytes))| format!("{kind}: {count} keys {bytes} B"))
                .collect();
            println!("    {}", kinds.join(", "));
        }
    }
    Ok(())
}
