//! `syncbase watch DB [TABLE [PREFIX]]`: prints row changes as they commit, local or synced,
//! one line each: `put|delete<TAB>table<TAB>key[<TAB>value]`, with `(sync)` on synced ones.

use std::rc::Rc;

use clap::Args;

use crate::cli::client::{Target, printable, with_service};
use crate::cli::output::{self, LocalFailure};
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
}

impl watch_sink::Server for PrintingWatcher {
    async fn push(self: Rc<Self>, params: watch_sink::PushParams) -> capnp::Result<()> {
        let mut lines = String::new();
        for change in params.get()?.get_changes()? {
            lines.push_str(&describe(change)?);
            lines.push('\n');
        }
        output::write_bytes(lines.as_bytes()).map_err(|error| self.failure.record(error))
    }
}

fn describe(change: watch_change::Reader<'_>) -> capnp::Result<String> {
    let (table, key) = (change.get_table()?.to_str()?, change.get_key()?.to_str()?);
    let origin = if change.get_initial() {
        " (initial)"
    } else if change.get_from_sync() {
        " (sync)"
    } else {
        ""
    };
    Ok(match change.which()? {
        watch_change::Put(value) => format!("put\t{table}\t{key}\t{}{origin}", printable(value?)),
        watch_change::Delete(()) => format!("delete\t{table}\t{key}{origin}"),
    })
}
