//! How a client verb reaches its node, and why it could not: the node's app address and
//! client token from the flags, the config file or the data directory ([`Located`], with
//! where each came from), and the error a failed connection becomes, naming the real cause
//! and its fix (a token file that is missing or refused, a data directory no node ran in, a
//! stale `node.addr`, an address that is a peer port).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use crate::cli::client::Target;
use crate::config::{ADDR_FILE, Config, PEER_ADDR_FILE};
use crate::token::ClientToken;

/// Where a client verb's node is, and where each part came from.
pub(crate) struct Located {
    pub addr: SocketAddr,
    pub token: ClientToken,
    /// The file the address was read from (`node.addr`), or None for `--addr`.
    addr_file: Option<PathBuf>,
    token_path: PathBuf,
    /// How the token path was chosen: `--token-file`, the config's `token_file`, or the data
    /// directory.
    token_source: &'static str,
    data_dir: PathBuf,
}

/// Finds the node's address and token: flags first, then the config file, then the data
/// directory. Errors name the file read and the fix.
pub(crate) fn locate(target: &Target) -> anyhow::Result<Located> {
    let config = config_of(target)?;
    let (token_path, token_source) = match (&target.token_file, &config.token_file) {
        (Some(path), _) => (path.clone(), "--token-file"),
        (None, Some(path)) => (path.clone(), "the config's token_file"),
        (None, None) => (config.token_path(), "the data directory"),
    };
    let token = read_token(&token_path, token_source, &config.data_dir)?;
    let (addr, addr_file) = match target.addr {
        Some(addr) => (addr, None),
        None => (read_addr_file(&config)?, Some(config.addr_path())),
    };
    Ok(Located {
        addr,
        token,
        addr_file,
        token_path,
        token_source,
        data_dir: config.data_dir,
    })
}

/// The config `target` names (its file, or the default), with `--data-dir` applied.
pub(crate) fn config_of(target: &Target) -> anyhow::Result<Config> {
    let mut config = match &target.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &target.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

/// Reads the client token; a missing file says which path was read and why it is missing.
fn read_token(path: &Path, source: &str, data_dir: &Path) -> anyhow::Result<ClientToken> {
    if path.exists() {
        return ClientToken::read(path);
    }
    if source != "the data directory" {
        return Err(anyhow!(
            "the client token file {} (from {source}) does not exist; a node's token is \
             client.token in its data directory",
            path.display()
        ));
    }
    Err(anyhow!(
        "{} does not exist: no node has run with data directory {}; start one with \
         `syncbase serve --data-dir {}`, or pass the data directory (--data-dir) or config \
         (--config) of a running node",
        path.display(),
        data_dir.display(),
        data_dir.display()
    ))
}

fn read_addr_file(config: &Config) -> anyhow::Result<SocketAddr> {
    let path = config.addr_path();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the node's address from {}: the node is not running (it writes the file \
             at start and removes it on exit); start it with `syncbase serve --data-dir {}`, \
             or pass --addr",
            path.display(),
            config.data_dir.display()
        )
    })?;
    crate::address::resolve(text.trim()).with_context(|| format!("address file {}", path.display()))
}

impl Located {
    /// The error a failed connection or login becomes: the cause, in the user's terms, with
    /// the fix; other errors are returned as they are.
    pub(crate) fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        let message = format!("{error:#}");
        if is_refused(&error) {
            return self.not_running(error);
        }
        if message.starts_with("NoAccess: wrong client token") {
            return anyhow!(
                "NoAccess: the node at {} refused the client token read from {} (chosen by \
                 {}); pass that node's own token: client.token in its data directory \
                 (--data-dir DIR, or --token-file DIR/client.token)",
                self.addr,
                self.token_path.display(),
                self.token_source
            );
        }
        if message.starts_with("connection to the node lost") {
            return self.not_an_app_port(error);
        }
        if message.contains("a frame announces") && message.contains("not Cap'n Proto") {
            let web = match message.contains("\"HTTP\"") {
                true => {
                    " It answered in HTTP: a web server, such as a node's status page \
                         (`serve --http`)."
                }
                false => "",
            };
            return error.context(format!(
                "{} does not speak the app API (Cap'n Proto).{web} Pass the node's app address: \
                 its --listen, recorded in {ADDR_FILE} in its data directory",
                self.addr
            ));
        }
        error
    }

    /// A refused connection: no node listens there.
    /// With `--addr`, the data directory (and so `serve --data-dir`) may have nothing to do
    /// with that node: the fix named is to check the address.
    fn not_running(&self, error: anyhow::Error) -> anyhow::Error {
        let hint = match &self.addr_file {
            Some(path) => format!(
                "no node is running at {} (read from {}, a file a node that stopped without \
                 cleaning up (killed, or crashed) leaves behind); start it with `syncbase \
                 serve --data-dir {}`",
                self.addr,
                path.display(),
                self.data_dir.display()
            ),
            None => format!(
                "no node is running at {} (given with --addr); check the address: a node's \
                 app address is the one `syncbase serve` prints and writes to {ADDR_FILE} in \
                 its data directory (its --listen)",
                self.addr
            ),
        };
        error.context(hint)
    }

    /// The far end closed without answering the app API: most likely a peer (TLS) port.
    fn not_an_app_port(&self, error: anyhow::Error) -> anyhow::Error {
        let files = |name: &str| std::fs::read_to_string(self.data_dir.join(name));
        let app = files(ADDR_FILE).map(|text| text.trim().to_owned());
        let peer = files(PEER_ADDR_FILE).map(|text| text.trim().to_owned());
        let hint = match (app, peer) {
            (Ok(app), Ok(peer)) if peer == self.addr.to_string() => format!(
                "{} is this node's peer port (the TLS listener for other nodes, in {}); its \
                 app port, for the CLI and apps, is {app} (in {ADDR_FILE}): pass --addr {app}",
                self.addr, PEER_ADDR_FILE
            ),
            (Ok(app), _) => format!(
                "{} closed the connection without answering the app API: it looks like a \
                 peer port (the TLS listener, `--peer-listen`); the app port in {} is {app}",
                self.addr,
                self.data_dir.join(ADDR_FILE).display()
            ),
            _ => format!(
                "{} closed the connection without answering the app API: it looks like a \
                 peer port (the TLS listener, `--peer-listen`); pass the app port (`serve \
                 --listen`, recorded in {ADDR_FILE} in the node's data directory)",
                self.addr
            ),
        };
        error.context(hint)
    }
}

fn is_refused(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}
