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

use crate::cli::output::{self, LocalFailure, outln, shown};
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
    /// One JSON object per row: {"key": string, "value": string} (or "value_hex": hex digits
    /// instead of "value" when the value is not UTF-8).
    #[arg(long)]
    json: bool,
}

/// `put`: stores the value ("-": read from stdin) and says so in one line.
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
    let size = value.len() as u64;
    with_table(&args.target, &args.db, &args.table, |table| async move {
        let mut request = table.put_request();
        request.get().set_key(key);
        request.get().set_value(&value);
        request.send().promise.await.map_err(remote_error)?;
        Ok(())
    })?;
    outln!(
        "stored {} in {} ({})",
        shown(key.as_bytes()),
        row_place(&args.db, &args.table),
        output::count(size, "byte", "bytes")
    )?;
    Ok(())
}

/// "table T of database D", where a row verb's line says it acted.
fn row_place(db: &str, table: &str) -> String {
    format!(
        "table {} of database {}",
        shown(table.as_bytes()),
        shown(db.as_bytes())
    )
}

/// `get`: prints the value: its exact bytes into a pipe or file, and on a terminal as `scan`
/// shows it ([`shown`]) with a newline; a missing row fails with `NoExist:`.
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
    if std::io::stdout().is_terminal() {
        outln!("{}", shown(&value))?;
    } else {
        output::write_bytes(&value)?;
    }
    Ok(())
}

/// `delete`: says in one line that it deleted the row, and whether it existed here. The
/// database must exist (`NoExist:`): a delete never creates one, so a mistyped name leaves
/// nothing behind.
pub fn delete(args: &RowArgs) -> anyhow::Result<()> {
    let key = args.key.as_str();
    let existed = with_existing_table(&args.target, &args.db, &args.table, |table| async move {
        let mut request = table.delete_request();
        request.get().set_key(key);
        let response = request.send().promise.await.map_err(remote_error)?;
        Ok(response.get()?.get_existed())
    })?;
    let absent = if existed {
        ""
    } else {
        " (it was absent here; the delete is recorded and syncs all the same)"
    };
    outln!(
        "deleted {} in {}{absent}",
        shown(key.as_bytes()),
        row_place(&args.db, &args.table)
    )?;
    Ok(())
}

/// `scan`: prints every row under the prefix.
pub fn scan(args: &ScanArgs) -> anyhow::Result<()> {
    let prefix = args.prefix.as_str();
    let json = args.json;
    with_existing_table(&args.target, &args.db, &args.table, |table| async move {
        let failure = LocalFailure::default();
        let sink: row_sink::Client = capnp_rpc::new_client(PrintingSink {
            failure: failure.clone(),
            json,
        });
        let mut request = table.scan_request();
        request.get().set_prefix(prefix);
        request.get().set_sink(sink);
        failure.run(request.send().promise).await?;
        Ok(())
    })
}

/// Prints each pushed row as `key<TAB>value` (both [`shown`]) or, with `json`, as a JSON
/// line; a failed write stops the scan and is kept in `failure`.
struct PrintingSink {
    failure: LocalFailure,
    json: bool,
}

impl row_sink::Server for PrintingSink {
    async fn push(self: Rc<Self>, params: row_sink::PushParams) -> capnp::Result<()> {
        let mut lines = String::new();
        for row in params.get()?.get_rows()? {
            let (key, value) = (row.get_key()?.as_bytes(), row.get_value()?);
            if self.json {
                let mut object = serde_json::Map::new();
                output::bytes_field(&mut object, "key", key);
                output::bytes_field(&mut object, "value", value);
                lines.push_str(&serde_json::Value::Object(object).to_string());
            } else {
                lines.push_str(&format!("{}\t{}", shown(key), shown(value)));
            }
            lines.push('\n');
        }
        output::write_bytes(lines.as_bytes()).map_err(|error| self.failure.record(error))
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
    // Checked here first, by the node's own rules: a bad table name must not leave behind
    // the database its request would have created.
    crate::names::DbName::parse(db)?;
    crate::names::TableName::parse(table)?;
    let mut request = service.database_request();
    request.get().set_name(db);
    request.get().set_create(create);
    let db = request.send().pipeline.get_db();
    let mut request = db.table_request();
    request.get().set_name(table);
    let response = request.send().promise.await.map_err(remote_error)?;
    Ok(response.get()?.get_table()?)
}
