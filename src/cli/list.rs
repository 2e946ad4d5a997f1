//! `ls`: the databases on a node with their tables and live data, or one database's tables
//! with theirs (`Database.listTables`), as aligned columns or JSON lines. The figures are
//! the node's (`store::tables`, the rule `status` counts live data by), summed here per
//! database; names print as `scan` prints keys ([`shown`]).

use anyhow::bail;
use clap::Args;
use serde_json::json;

use crate::cli::client::{Target, with_service};
use crate::cli::output::{Columns, json_line, outln, shown};
use crate::rpc::client::remote_error;
use crate::schema::service_capnp::service;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: Target,
    /// List this database's tables instead of the databases.
    db: Option<String>,
    /// Print only this table's line (its rows are `scan`'s job).
    table: Option<String>,
    /// One JSON object per line. Databases: {"database": string, "tables": number,
    /// "live_rows": number, "live_bytes": number}; tables: {"database": string, "table":
    /// string, "live_rows": number, "live_bytes": number}. Nothing to list prints nothing.
    #[arg(long)]
    json: bool,
}

/// One table's name and live data, as the node answered.
struct Table {
    name: String,
    rows: u64,
    bytes: u64,
}

/// `ls`, `ls DB`, `ls DB TABLE`.
pub fn run(args: &ListArgs) -> anyhow::Result<()> {
    with_service(&args.target, |service| async move {
        match (&args.db, &args.table) {
            (None, _) => list_databases(&service, args.json).await,
            (Some(db), table) => list_tables(&service, db, table.as_deref(), args.json).await,
        }
    })
}

/// One line per database: its name, tables, live rows and live bytes.
async fn list_databases(service: &service::Client, json: bool) -> anyhow::Result<()> {
    let response = service
        .list_databases_request()
        .send()
        .promise
        .await
        .map_err(remote_error)?;
    let mut databases = Vec::new();
    for name in response.get()?.get_names()? {
        let name = name?.to_str()?.to_owned();
        let tables = fetch_tables(service, &name).await?;
        databases.push((name, tables));
    }
    if json {
        for (name, tables) in &databases {
            json_line(&json!({
                "database": name,
                "tables": tables.len(),
                "live_rows": tables.iter().map(|t| t.rows).sum::<u64>(),
                "live_bytes": tables.iter().map(|t| t.bytes).sum::<u64>(),
            }))?;
        }
        return Ok(());
    }
    if databases.is_empty() {
        outln!("no databases on this node; a put creates one: syncbase put DB TABLE KEY VALUE")?;
        return Ok(());
    }
    let mut columns = Columns::default();
    columns.row(["DATABASE", "TABLES", "ROWS", "BYTES"]);
    for (name, tables) in &databases {
        columns.row([
            shown(name.as_bytes()),
            tables.len().to_string(),
            tables.iter().map(|t| t.rows).sum::<u64>().to_string(),
            tables.iter().map(|t| t.bytes).sum::<u64>().to_string(),
        ]);
    }
    columns.print("")?;
    Ok(())
}

/// One line per table of `db` holding live rows (only `only`'s, if given).
async fn list_tables(
    service: &service::Client,
    db: &str,
    only: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let mut tables = fetch_tables(service, db).await?;
    if let Some(only) = only {
        tables.retain(|table| table.name == only);
        if tables.is_empty() {
            // Quoted as `get` quotes what it did not find.
            bail!(
                "NoExist: no table {only:?} in database {db:?} (no live row); list its tables: \
                 syncbase ls {}",
                shown(db.as_bytes())
            );
        }
    }
    if json {
        for table in &tables {
            json_line(&json!({
                "database": db,
                "table": table.name,
                "live_rows": table.rows,
                "live_bytes": table.bytes,
            }))?;
        }
        return Ok(());
    }
    if tables.is_empty() {
        outln!(
            "no tables in database {}: it has no live row; a put creates one: syncbase put {} \
             TABLE KEY VALUE",
            shown(db.as_bytes()),
            shown(db.as_bytes())
        )?;
        return Ok(());
    }
    let mut columns = Columns::default();
    columns.row(["TABLE", "ROWS", "BYTES"]);
    for table in &tables {
        columns.row([
            shown(table.name.as_bytes()),
            table.rows.to_string(),
            table.bytes.to_string(),
        ]);
    }
    columns.print("")?;
    Ok(())
}

/// `db`'s tables with live rows, by name; `NoExist:` naming `db` and how to list the
/// databases if the node does not have it.
async fn fetch_tables(service: &service::Client, db: &str) -> anyhow::Result<Vec<Table>> {
    let mut request = service.database_request();
    request.get().set_name(db);
    request.get().set_create(false);
    let database = request.send().pipeline.get_db();
    let response = match database.list_tables_request().send().promise.await {
        Ok(response) => response,
        Err(error) => {
            let error = remote_error(error);
            if error.to_string().starts_with("NoExist:") {
                bail!("{error}; list the databases: syncbase ls");
            }
            return Err(error);
        }
    };
    let mut tables = Vec::new();
    for info in response.get()?.get_tables()? {
        tables.push(Table {
            name: info.get_name()?.to_str()?.to_owned(),
            rows: info.get_live_rows(),
            bytes: info.get_live_bytes(),
        });
    }
    Ok(tables)
}
