//! Node configuration: the TOML file's shape, its defaults (the embedded default is LMDB in
//! `./syncbase-data`, listening on 127.0.0.1:7700), validation, and every path derived from
//! the data directory, in one place.
//!
//! ```toml
//! data_dir = "./syncbase-data"      # token, address file and (by default) the LMDB store;
//!                                   # relative paths are relative to this file's directory
//! listen = "127.0.0.1:7700"         # app API address; port 0 picks a free port
//! token_file = "client.token"      # default: <data_dir>/client.token
//! log_level = "info"                # error | warn | info | debug | trace
//! http_listen = "127.0.0.1:7780"    # status page and /metrics; absent = none; any address
//!                                   # but loopback asks for the client token
//! name = "laptop"                   # shown to peers beside this node's fingerprint
//!                                   # (default: the host name; never an identity)
//!
//! [storage]
//! backend = "lmdb"                  # lmdb | memory
//! path = "lmdb"                    # default: <data_dir>/lmdb
//! map_size = 1073741824             # bytes; the LMDB map's initial size
//! max_map_size = 68719476736        # bytes; the map grows by itself up to this (default
//!                                   # 64 GiB, never past the disk's free space); memory: a
//!                                   # bound on keys and values (default none)
//! reserve = 268435456               # bytes of the maximum kept for deletes and collection
//!                                   # (default 1/16 of it, 8 MiB to 256 MiB, at most 1/8)
//! durable = true                    # fsync every commit (lmdb)
//!
//! [sync]
//! peer_listen = "127.0.0.1:7701"    # TLS peer listener; absent = accept no peers
//! redial_max_ms = 5000              # cap of the exponential backoff between dials
//! role = "normal"                   # normal | server | leaf (syncs only with servers)
//! horizon_secs = 604800             # a member silent this long stops holding back history
//!                                   # collection (it catches up by state when it returns)
//! collect_interval_secs = 60        # pause between background history collection passes;
//!                                   # 0 = only `syncbase gc DB`
//!
//! [[sync.peers]]                    # a peer to sync with (and to accept)
//! address = "127.0.0.1:7801"
//! fingerprint = "<64 hex digits from `syncbase id` on the peer>"
//! database = "photos"
//! scopes = ["meta", "thumbs/2024/"] # TABLE or TABLE/PREFIX
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use syncbase_storage::{BACKENDS, StorageConfig};

use crate::identity::Fingerprint;
use crate::names::DbName;
use crate::sync::peers::parse_scope;

/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "syncbase-data";
/// Default app API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
/// Name of the client token file in the data directory.
pub const TOKEN_FILE: &str = "client.token";
/// Name of the file in the data directory that records the bound app address.
pub const ADDR_FILE: &str = "node.addr";
/// Name of the file in the data directory that records the bound peer address.
pub const PEER_ADDR_FILE: &str = "peer.addr";

const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// A node's whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The app API address (`HOST:PORT`, read by `address::resolve`).
    #[serde(deserialize_with = "resolved_address")]
    pub listen: SocketAddr,
    pub token_file: Option<PathBuf>,
    pub log_level: String,
    /// Where the status page and `/metrics` listen (`http`); None: not served. Any address
    /// but a loopback one serves only requests that carry the client token.
    pub http_listen: Option<SocketAddr>,
    /// The name this node shows its fellow syncgroup members beside its fingerprint (None:
    /// the host name). At most 64 bytes, no control characters; never an identity.
    pub name: Option<String>,
    pub storage: StorageSection,
    pub sync: SyncSection,
}

/// The `[sync]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSection {
    /// Where the TLS peer listener binds (port 0 picks one); None: no peer listener.
    pub peer_listen: Option<String>,
    /// Longest pause between dials of an unreachable peer, in milliseconds (the pause starts
    /// at 50 ms and doubles).
    pub redial_max_ms: u64,
    /// How this node takes part in syncgroups (the original's device types).
    pub role: Role,
    /// Seconds after which a silent member no longer holds back history collection.
    pub horizon_secs: u64,
    /// Seconds between background collection passes (default 60; 0: collect only on
    /// `syncbase gc`). ARCHITECTURE.md, "History garbage collection".
    pub collect_interval_secs: u64,
    pub peers: Vec<DeclaredPeer>,
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            peer_listen: None,
            redial_max_ms: 5000,
            role: Role::Normal,
            horizon_secs: 7 * 24 * 3600,
            collect_interval_secs: 60,
            peers: Vec::new(),
        }
    }
}

/// How a node takes part in its syncgroups.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Advertises its peer address to fellow members and dials every member that has one.
    #[default]
    Normal,
    /// Like normal, and marked as a server in its member info: leaves sync through it.
    Server,
    /// A device that is not reachable (a phone, a laptop behind NAT): it advertises no address
    /// and dials only members marked as servers (and its declared peers).
    Leaf,
}

impl Role {
    /// Its config spelling: `normal`, `server`, `leaf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Normal => "normal",
            Role::Server => "server",
            Role::Leaf => "leaf",
        }
    }
}

/// One `[[sync.peers]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeclaredPeer {
    pub address: String,
    pub fingerprint: String,
    pub database: String,
    /// `TABLE` or `TABLE/PREFIX` strings.
    pub scopes: Vec<String>,
}

impl DeclaredPeer {
    /// Checks every field, each error naming its key (`fingerprint: bad peer fingerprint ...`).
    fn validate(&self) -> anyhow::Result<()> {
        keyed(crate::address::check(&self.address), "address")?;
        keyed(Fingerprint::parse(&self.fingerprint), "fingerprint")?;
        keyed(DbName::parse(&self.database), "database")?;
        if self.scopes.is_empty() {
            bail!("scopes: at least one TABLE or TABLE/PREFIX");
        }
        for scope in &self.scopes {
            keyed(parse_scope(scope), &format!("scopes: {scope:?}"))?;
        }
        Ok(())
    }
}

/// A node error as a config error naming its `key`: `key: detail`, without the node error's
/// id (`fingerprint: bad peer fingerprint ...`, not `fingerprint: InvalidArgument: ...`),
/// since a config error is read by a person, not matched by a client.
fn keyed<T>(result: crate::error::Result<T>, key: &str) -> anyhow::Result<T> {
    result.map_err(|error| anyhow::anyhow!("{key}: {}", error.detail()))
}

/// Deserializes an address with the one `HOST:PORT` parser.
fn resolved_address<'de, D: serde::Deserializer<'de>>(input: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(input)?;
    crate::address::resolve(&text).map_err(|error| serde::de::Error::custom(error.detail()))
}

/// The `[storage]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    pub backend: String,
    pub path: Option<PathBuf>,
    /// The LMDB map's initial size in bytes.
    pub map_size: u64,
    /// The most the store may hold in bytes (see `StorageConfig::max_map_size`).
    pub max_map_size: Option<u64>,
    /// The bytes of the maximum kept for deletes and collection.
    pub reserve: Option<u64>,
    pub durable: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN.parse().expect("the default address parses"),
            token_file: None,
            log_level: "info".into(),
            http_listen: None,
            name: None,
            storage: StorageSection::default(),
            sync: SyncSection::default(),
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        let defaults = StorageConfig::default();
        StorageSection {
            backend: defaults.backend,
            path: None,
            map_size: defaults.map_size,
            max_map_size: defaults.max_map_size,
            reserve: defaults.reserve,
            durable: defaults.durable,
        }
    }
}

impl Config {
    /// Reads and validates a TOML config file. A relative path the file gives (`data_dir`,
    /// `token_file`, `storage.path`) is relative to the file's directory, as in Cargo and
    /// systemd, so the node finds the same files from whatever directory it starts in; a
    /// `data_dir` the file leaves out stays `./syncbase-data` in the current directory.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let mut config =
            Config::parse(&text).with_context(|| format!("config file {}", path.display()))?;
        let file_dir = path.parent().unwrap_or(Path::new(""));
        let sets_data_dir =
            toml::from_str::<toml::Table>(&text).is_ok_and(|table| table.contains_key("data_dir"));
        if sets_data_dir {
            config.data_dir = file_dir.join(&config.data_dir);
        }
        for path in [&mut config.token_file, &mut config.storage.path]
            .into_iter()
            .flatten()
        {
            *path = file_dir.join(&*path);
        }
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text).map_err(|error| one_line(text, &error))?;
        config.validate()?;
        config.validate_peers()?;
        Ok(config)
    }

    /// Checks the values serde cannot: known backend, sane sizes, a known log level.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !BACKENDS.contains(&self.storage.backend.as_str()) {
            bail!(
                "storage.backend: unknown backend {:?}; known backends: {}",
                self.storage.backend,
                BACKENDS.join(", ")
            );
        }
        if self.storage.map_size < 1 << 20 {
            bail!(
                "storage.map_size: {} bytes is too small (at least 1 MiB)",
                self.storage.map_size
            );
        }
        self.validate_limits()?;
        if !LOG_LEVELS.contains(&self.log_level.as_str()) {
            bail!(
                "log_level: unknown level {:?}; use one of {}",
                self.log_level,
                LOG_LEVELS.join(", ")
            );
        }
        if self.sync.redial_max_ms < 50 {
            bail!(
                "sync.redial_max_ms: {} is too small (at least 50)",
                self.sync.redial_max_ms
            );
        }
        if self.sync.horizon_secs == 0 {
            bail!(
                "sync.horizon_secs: must be at least 1 (a member silent this long stops holding back history collection)"
            );
        }
        if self.data_dir.as_os_str().is_empty() {
            bail!("data_dir: must not be empty");
        }
        if let Some(name) = &self.name {
            keyed(crate::syncgroup::check_member_name(name), "name")?;
            keyed(
                crate::syncgroup::name::check_member_name_shown(name),
                "name",
            )?;
        }
        Ok(())
    }

    /// The name this node shows its peers: the configured `name`, else the host name (Linux:
    /// `/proc/sys/kernel/hostname`, else `$HOSTNAME`), cut to 64 bytes; "" if none is known.
    pub fn node_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        let mut host: String = host
            .trim()
            .chars()
            .filter(|c| !c.is_control() && !crate::names::is_hidden(*c))
            .collect();
        while host.len() > crate::syncgroup::MAX_MEMBER_NAME_BYTES {
            host.pop();
        }
        host
    }

    /// Checks what a config file says of peers: `sync.peer_listen` and each
    /// `[[sync.peers]]`, every error naming its key. Only files are checked so: a node built
    /// in code may run on the memory network, whose addresses are plain names.
    fn validate_peers(&self) -> anyhow::Result<()> {
        if let Some(listen) = &self.sync.peer_listen {
            keyed(crate::address::check(listen), "sync.peer_listen")?;
        }
        for (i, peer) in self.sync.peers.iter().enumerate() {
            peer.validate()
                .with_context(|| format!("sync.peers[{i}] (address {:?})", peer.address))?;
        }
        Ok(())
    }

    /// Checks `storage.max_map_size` against `map_size` and `storage.reserve` against the
    /// maximum.
    fn validate_limits(&self) -> anyhow::Result<()> {
        let storage = &self.storage;
        if let Some(max) = storage.max_map_size
            && max < storage.map_size
        {
            bail!(
                "storage.max_map_size: {max} bytes is less than storage.map_size ({} bytes)",
                storage.map_size
            );
        }
        if let Some(reserve) = storage.reserve {
            let max = self.storage_config().max_map_size_or_default();
            if reserve >= max {
                bail!(
                    "storage.reserve: {reserve} bytes must be less than the maximum ({max} bytes, storage.max_map_size)"
                );
            }
        }
        Ok(())
    }

    /// Where the node records the peer address it bound.
    pub fn peer_addr_path(&self) -> PathBuf {
        self.data_dir.join(PEER_ADDR_FILE)
    }

    /// Where the client token lives.
    pub fn token_path(&self) -> PathBuf {
        self.token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(TOKEN_FILE))
    }

    /// Where the node records the app address it bound.
    pub fn addr_path(&self) -> PathBuf {
        self.data_dir.join(ADDR_FILE)
    }

    /// Whether the node keeps its rows on disk.
    pub fn is_memory(&self) -> bool {
        self.storage.backend == "memory"
    }

    /// How the node collects history (`node::collect`), from `[sync]`.
    pub fn collect_settings(&self) -> crate::node::CollectSettings {
        crate::node::CollectSettings {
            horizon: std::time::Duration::from_secs(self.sync.horizon_secs),
            interval: std::time::Duration::from_secs(self.sync.collect_interval_secs),
            ..crate::node::CollectSettings::default()
        }
    }

    /// The storage backend's settings, with the LMDB path derived from the data directory.
    pub fn storage_config(&self) -> StorageConfig {
        let path = (!self.is_memory()).then(|| {
            self.storage
                .path
                .clone()
                .unwrap_or_else(|| self.data_dir.join("lmdb"))
        });
        StorageConfig {
            backend: self.storage.backend.clone(),
            path,
            map_size: self.storage.map_size,
            max_map_size: self.storage.max_map_size,
            reserve: self.storage.reserve,
            durable: self.storage.durable,
        }
    }
}

/// A TOML error as one line naming the line and its text: `line N (key = value): message`.
fn one_line(text: &str, error: &toml::de::Error) -> anyhow::Error {
    let message = error.message().trim();
    let Some(span) = error.span() else {
        return anyhow::anyhow!("{message}");
    };
    let start = span.start.min(text.len());
    let number = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(number - 1).unwrap_or_default().trim();
    anyhow::anyhow!("line {number} ({line}): {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_embedded_default() {
        let config = Config::parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.to_string(), "127.0.0.1:7700");
        assert_eq!(
            config.storage_config().path,
            Some(PathBuf::from("syncbase-data/lmdb"))
        );
        assert_eq!(
            config.token_path(),
            PathBuf::from("syncbase-data/client.token")
        );
    }

    #[test]
    fn relative_paths_in_a_file_resolve_against_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        let text = "data_dir = \"./data\"\ntoken_file = \"secret/tok\"\n\
                    [storage]\npath = \"/abs/lmdb\"\n";
        std::fs::write(&file, text).unwrap();
        let config = Config::load(&file).unwrap();
        assert_eq!(config.data_dir, dir.path().join("./data"));
        assert_eq!(config.token_path(), dir.path().join("secret/tok"));
        assert_eq!(
            config.storage_config().path,
            Some(PathBuf::from("/abs/lmdb"))
        );
        assert_eq!(config.addr_path(), dir.path().join("data/node.addr"));
        // A file that leaves data_dir out keeps the default, in the current directory.
        std::fs::write(&file, "listen = \"127.0.0.1:0\"\n").unwrap();
        let config = Config::load(&file).unwrap();
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn a_full_file_sets_every_field() {
        let text = r#"
            data_dir = "/tmp/x"
            listen = "127.0.0.1:0"
            token_file = "/tmp/tok"
            log_level = "debug"
            http_listen = "127.0.0.1:7780"
            [storage]
            backend = "memory"
            map_size = 2097152
            durable = false
            [sync]
            peer_listen = "127.0.0.1:0"
            [[sync.peers]]
            address = "localhost:9"
            fingerprint = "abababababababababababababababababababababababababababababababab"
            database = "db"
            scopes = ["t", "u/p"]
        "#;
        let config = Config::parse(text).unwrap();
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.http_listen, Some("127.0.0.1:7780".parse().unwrap()));
        assert_eq!(
            Config::default().http_listen,
            None,
            "no status page by default"
        );
        assert_eq!(config.token_path(), PathBuf::from("/tmp/tok"));
        assert!(config.is_memory());
        assert_eq!(config.storage_config().path, None);
        assert_eq!(config.sync.peer_listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(config.sync.role, Role::Normal, "the default role");
        let leaf = Config::parse("[sync]\nrole = \"leaf\"").unwrap();
        assert_eq!(leaf.sync.role, Role::Leaf);
        assert_eq!(config.sync.peers[0].scopes, ["t", "u/p"]);
    }

    #[test]
    fn an_unknown_key_is_named() {
        let error = Config::parse("[storage]\nbakend = \"lmdb\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("line 2 (bakend = \"lmdb\"): unknown field `bakend`"),
            "{error}"
        );
        assert_eq!(error.lines().count(), 1);
    }

    #[test]
    fn an_unknown_backend_lists_the_known_ones() {
        let error = Config::parse("[storage]\nbackend = \"rocks\"\n").unwrap_err();
        assert!(
            error.to_string().contains("known backends: memory, lmdb"),
            "{error}"
        );
    }

    #[test]
    fn bad_values_are_errors() {
        for text in [
            "listen = \"nowhere\"",
            "log_level = \"loud\"",
            "[storage]\nmap_size = 10",
            "[storage]\nmap_size = -1",
            "data_dir = 5",
            "[sync]\nrole = \"boss\"",
        ] {
            assert!(Config::parse(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn addresses_are_read_by_the_one_parser() {
        let config = Config::parse("listen = \"localhost:17730\"").unwrap();
        assert!(config.listen.ip().is_loopback() && config.listen.port() == 17730);
        let error = Config::parse("listen = \"::1:7700\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("IPv6 address in brackets"), "{error}");
        let error = format!(
            "{:#}",
            Config::parse("[sync]\npeer_listen = \"x\"").unwrap_err()
        );
        assert!(error.starts_with("sync.peer_listen: "), "{error}");
    }

    #[test]
    fn a_bad_declared_peer_names_its_key() {
        let peer = |field: &str| {
            let mut fields = vec![
                "address = \"127.0.0.1:9\"".to_owned(),
                format!("fingerprint = \"{}\"", "ab".repeat(32)),
                "database = \"db\"".to_owned(),
                "scopes = [\"t\"]".to_owned(),
            ];
            let key = field.split(' ').next().unwrap();
            fields.retain(|line| !line.starts_with(key));
            fields.push(field.to_owned());
            let text = format!("[[sync.peers]]\n{}", fields.join("\n"));
            format!("{:#}", Config::parse(&text).unwrap_err())
        };
        for (field, key) in [
            ("fingerprint = \"xyz\"", "fingerprint: "),
            ("address = \"nowhere\"", "address: "),
            ("database = \"\"", "database: "),
            ("scopes = [\"/p\"]", "scopes: "),
        ] {
            let error = peer(field);
            assert!(error.starts_with("sync.peers[0] "), "{field}: {error}");
            assert!(error.contains(key), "{field}: {error}");
            assert!(
                !error.contains("InvalidArgument"),
                "no id mid-line: {error}"
            );
        }
    }

    #[test]
    fn storage_limits_are_checked_and_each_error_names_its_key() {
        let limits = |text: &str| Config::parse(&format!("[storage]\n{text}"));
        let config =
            limits("map_size = 1048576\nmax_map_size = 4194304\nreserve = 262144").unwrap();
        let map = config.storage_config().lmdb_map().unwrap();
        assert_eq!((map.initial, map.limits.max()), (1 << 20, 4 << 20));
        assert_eq!(map.limits.reserve(), 256 << 10);
        let default = Config::default().storage_config().lmdb_map().unwrap();
        assert_eq!(default.limits.max(), syncbase_storage::DEFAULT_MAX_MAP_SIZE);
        assert_eq!(default.limits.reserve(), 256 << 20);
        for (text, key) in [
            (
                "map_size = 4194304\nmax_map_size = 2097152",
                "storage.max_map_size:",
            ),
            (
                "max_map_size = 4194304\nmap_size = 1048576\nreserve = 4194304",
                "storage.reserve:",
            ),
            ("reserve = 68719476736", "storage.reserve:"),
        ] {
            let error = limits(text).unwrap_err().to_string();
            assert!(error.starts_with(key), "{text}: {error}");
            assert_eq!(error.lines().count(), 1, "{error}");
        }
    }
}
