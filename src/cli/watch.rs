//! `syncbase watch DB [TABLE [PREFIX]]`: prints row changes as they commit, local or synced,
//! one line each: `put|delete<TAB>origin<TAB>table<TAB>key[<TAB>value]`, the origin
//! `local`, `sync` or `initial` (`--initial`'s current rows), keys and values as `scan` shows
//! them (`output::shown`); or with `--json` one JSON object per change.

use std::rc::Rc;

use clap::Args;

use crate::cli::client::{Target, with_service};
use crate::cli::output::{self, LocalFailure, shown};
use crate::schema::service_capnp::{watch_change, watch_sink};

// No doc comment: the subcommand's help is its variant's in `cli::Command`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    target: Target,
    db: String,
    /// Only this table ("" or absent: every table).
    #[arg(default_value = "")]
    table: String,
    /// Only keys starting with this prefix.
    #[arg(default_value = "")]
    prefix: String,
    /// First print the current rows (needs TABLE).
    #[arg(long)]
    initial: bool,
    /// One JSON object per change: {"op": "put"|"delete", "origin": "local"|"sync"|"initial",
    /// "table": string, "key": string, "value": string} ("value" on puts only, or "value_hex":
    /// hex digits instead when the value is not UTF-8).
    #[arg(long)]
    json: bool,
}

/// Watches until the node stops or the user interrupts.
pub fn run(args: &WatchArgs) -> anyhow::Result<()> {
    let (db, table, prefix) = (args.db.as_str(), args.table.as_str(), args.prefix.as_str());
    let initial = args.initial;
    with_service(&args.target, |service| async move {
        let mut request = service.database_request();
        request.get().set_name(db);
        let database = request.send().pipeline.get_db();
        let mut request = database.watch_request();
        request.get().set_table(table);
        request.get().set_prefix(prefix);
        request.get().set_initial_state(initial);
        let failure = LocalFailure::default();
        let watcher = PrintingWatcher {
            failure: failure.clone(),
            json: args.json,
        };
        request
            .get()
            .set_sink(capnp_rpc::new_client::<watch_sink::Client, _>(watcher));
        failure.run(request.send().promise).await?;
        Ok(())
    })
}

/// Prints each pushed change; a failed write ends the watch and is kept in `failure`.
struct PrintingWatcher {
    failure: LocalFailure,
    json: bool,
}

impl watch_sink::Server for PrintingWatcher {
    async fn push(self: Rc<Self>, params: watch_sink::PushParams) -> capnp::Result<()> {
        let mut lines = String::new();
        for change in params.get()?.get_changes()? {
            let change = Change::read(change)?;
            lines.push_str(&if self.json {
                change.json().to_string()
            } else {
                change.line()
            });
            lines.push('\n');
        }
        output::write_bytes(lines.as_bytes()).map_err(|error| self.failure.record(error))
    }
}

/// One change as pushed: what, where, and where it came from.
struct Change<'a> {
    table: &'a str,
    key: &'a [u8],
    /// The new value of a put; `None` for a delete.
    value: Option<&'a [u8]>,
    origin: &'static str,
}

impl<'a> Change<'a> {
    fn read(change: watch_change::Reader<'a>) -> capnp::Result<Self> {
        let origin = if change.get_initial() {
            "initial"
        } else if change.get_from_sync() {
            "sync"
        } else {
            "local"
        };
        let value = match change.which()? {
            watch_change::Put(value) => Some(value?),
            watch_change::Delete(()) => None,
        };
        Ok(Change {
            table: change.get_table()?.to_str()?,
            key: change.get_key()?.as_bytes(),
            value,
            origin,
        })
    }

    fn op(&self) -> &'static str {
        if self.value.is_some() {
            "put"
        } else {
            "delete"
        }
    }

    /// `op<TAB>origin<TAB>table<TAB>key[<TAB>value]`.
    fn line(&self) -> String {
        let mut line = format!(
            "{}\t{}\t{}\t{}",
            self.op(),
            self.origin,
            shown(self.table.as_bytes()),
            shown(self.key)
        );
        if let Some(value) = self.value {
            line.push('\t');
            line.push_str(&shown(value));
        }
        line
    }

    fn json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("op".into(), self.op().into());
        object.insert("origin".into(), self.origin.into());
        object.insert("table".into(), self.table.into());
        output::bytes_field(&mut object, "key", self.key);
        if let Some(value) = self.value {
            output::bytes_field(&mut object, "value", value);
        }
        serde_json::Value::Object(object)
    }
}
