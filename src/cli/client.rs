//! The client verbs (`put`, `get`, `delete`, `scan`) and their arguments: find the node's
//! address and token from the flags, config or data directory ([`Target`], which every verb
//! that talks to a running node takes), dial it, do one call, print the outcome.

use std::future::Future;
use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;

use anyhow::{Context, bail};
use clap::Args;

use crate::cli::output::{self, LocalFailure, outln};
use crate::cli::reach;
use crate::rpc::client::{Session, remote_error};
use crate::schema::service_capnp::{row_sink, service, table};

/// How a client verb finds its node.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Config file of the node to talk to (its data_dir and token_file are used).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory of the node (holds node.addr and client.token) [default: ./syncbase-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The node's app address (HOST:PORT), instead of the one recorded in the data directory.
    #[arg(long, value_name = "ADDR", value_parser = crate::address::resolve)]
    pub addr: Option<SocketAddr>,
    /// The client token file, instead of the configured one.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

// The argument structs carry no doc comment: a subcommand's help is its variant's in
// `cli::Command`.

#[derive(Debug, Args)]
pub struct PutArgs {
    #[command(flatten)]
    target: Target,
    db: String,
    table: String,
    key: String,
    value: String,
}

// `get` and `delete`: one row.
#[derive(Debug, Args)]
pub struct RowArgs {
    #[command(flatten)]
    target: Target,
    db: String,
    table: String,
    key: String,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    target: Target,
    db: String,
    table: String,
    #[arg(default_value = "")]
    prefix: String,
}

/// `put`: stores the value ("-": read from stdin).
pub fn put(args: &PutArgs) -> anyhow::Result<()> {
    let (key, value) = (args.key.as_str(), args.value.as_str());
    let value = if value == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the value from stdin")?;
        bytes
    } else {
        value.as_bytes().to_vec()
    };
    with_table(&args.target, &args.db, &args.table, |table| async move {
        let mut request = table.put_request();
        request.get().set_key(key);
        request.get().set_value(&value);
        request.send().promise.await.map_err(remote_error)?;
        Ok(())
    })
}

/// `get`: prints the value; a missing row fails with `NoExist:`.
pub fn get(args: &RowArgs) -> anyhow::Result<()> {
    let RowArgs {
        target,
        db,
        table,
        key,
    } = args;
    let key = key.as_str();
    let value = with_existing_table(target, db, table, |table| async move {
        let mut request = table.get_request();
        request.get().set_key(key);
        let response = request.send().promise.await.map_err(remote_error)?;
        let results = response.get()?;
        Ok(results
            .get_found()
            .then(|| results.get_value().map(<[u8]>::to_vec))
            .transpose()?)
    })?;
    let Some(value) = value else {
        bail!("NoExist: no row {key:?} in table {table:?} of database {db:?}");
    };
    output::write_bytes(&value)?;
    if std::io::stdout().is_terminal() {
        output::write_bytes(b"\n")?;
    }
    Ok(())
}

/// `delete`: prints whether the row existed here.
pub fn delete(args: &RowArgs) -> anyhow::Result<()> {
    let key = args.key.as_str();
    let existed = with_table(&args.target, &args.db, &args.table, |table| async move {
        let mut request = table.delete_request();
        request.get().set_key(key);
        let response = request.send().promise.await.map_err(remote_error)?;
        Ok(response.get()?.get_existed())
    })?;
    outln!("{}", if existed { "deleted" } else { "absent" })?;
    Ok(())
}

/// `scan`: prints every row under the prefix.
pub fn scan(args: &ScanArgs) -> anyhow::Result<()> {
    let prefix = args.prefix.as_str();
    with_existing_table(&args.target, &args.db, &args.table, |table| async move {
        let failure = LocalFailure::default();
        let sink: row_sink::Client = capnp_rpc::new_client(PrintingSink {
            failure: failure.clone(),
        });
        let mut request = table.scan_request();
        request.get().set_prefix(prefix);
        request.get().set_sink(sink);
        failure.run(request.send().promise).await?;
        Ok(())
    })
}

/// Prints each pushed row as `key<TAB>value`; a failed write stops the scan and is kept in
/// `failure`.
struct PrintingSink {
    failure: LocalFailure,
}

impl row_sink::Server for PrintingSink {
    async fn push(self: Rc<Self>, params: row_sink::PushParams) -> capnp::Result<()> {
        let mut lines = String::new();
        for row in params.get()?.get_rows()? {
            let key = row.get_key()?.to_str()?;
            lines.push_str(&format!("{key}\t{}\n", printable(row.get_value()?)));
        }
        output::write_bytes(lines.as_bytes()).map_err(|error| self.failure.record(error))
    }
}

/// A value as text if it is printable UTF-8, else as 0x-prefixed hex.
pub(crate) fn printable(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => format!("0x{}", hex::encode(value)),
    }
}

/// Connects, opens the table (creating its database if absent) and runs `call` on it.
fn with_table<T, F, Fut>(target: &Target, db: &str, table: &str, call: F) -> anyhow::Result<T>
where
    F: FnOnce(table::Client) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    with_service(target, |service| async move {
        call(open_table(&service, db, table).await?).await
    })
}

/// [`with_table`] for a read, which creates nothing: `NoExist:` if the database is not on
/// the node.
fn with_existing_table<T, F, Fut>(
    target: &Target,
    db: &str,
    table: &str,
    call: F,
) -> anyhow::Result<T>
where
    F: FnOnce(table::Client) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    with_service(target, |service| async move {
        call(existing_table(&service, db, table).await?).await
    })
}

/// Connects and logs in to the node `target` names, runs `call` on its `Service`, and
/// closes the connection.
pub(crate) fn with_service<T, F, Fut>(target: &Target, call: F) -> anyhow::Result<T>
where
    F: FnOnce(service::Client) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let located = reach::locate(target)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let session = Session::connect(located.addr, located.token.as_str())
            .await
            .map_err(|error| located.explain(error))?;
        let outcome = call(session.service.clone()).await;
        let _ = session.close().await;
        outcome
    })
}

pub(crate) async fn open_table(
    service: &service::Client,
    db: &str,
    table: &str,
) -> anyhow::Result<table::Client> {
    table_of(service, db, table, true).await
}

/// [`open_table`] of a database that must already exist (`NoExist:` otherwise).
async fn existing_table(
    service: &service::Client,
    db: &str,
    table: &str,
) -> anyhow::Result<table::Client> {
    table_of(service, db, table, false).await
}

async fn table_of(
    service: &service::Client,
    db: &str,
    table: &str,
    create: bool,
) -> anyhow::Result<table::Client> {
    let mut request = service.database_request();
    request.get().set_name(db);
    request.get().set_create(create);
    let db = request.send().pipeline.get_db();
    let mut request = db.table_request();
    request.get().set_name(table);
    let response = request.send().promise.await.map_err(remote_error)?;
    Ok(response.get()?.get_table()?)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn values_print_as_text_or_hex() {
        assert_eq!(printable(b"hello"), "hello");
        assert_eq!(printable(b"a\tb"), "0x610962");
        assert_eq!(printable(&[0xff, 0x00]), "0xff00");
        assert_eq!(printable(b""), "");
    }
}
