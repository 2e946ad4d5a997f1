//! Cap'n Proto RPC messages written by hand, so an attacker can send calls without running an
//! RPC system (which would read the answers). Calls are pipelined on promised answers:
//! question 0 bootstraps the `Gate`, 1 logs in, 2 opens the database, 3 the table, and every
//! later question is a `Table.get` on it.

use capnp::traits::HasTypeId;
use capnp_rpc::rpc_capnp::message;

use crate::schema::service_capnp::{database, gate, service, table};

// The schema's method ordinals (`login @0`, ...), the only wire detail written by hand here;
// `tests::raw_calls_are_the_calls_the_generated_clients_make` checks them against the
// generated clients.
/// `Gate.login @0`.
const GATE_LOGIN: u16 = 0;
/// `Service.database @0`.
const SERVICE_DATABASE: u16 = 0;
/// `Database.table @0`.
const DATABASE_TABLE: u16 = 0;
/// `Table.get @1`.
const TABLE_GET: u16 = 1;
/// The pointer field of each answer the next call is made on (`service`, `db`, `table`).
const RESULT_CAP: u16 = 0;

/// Frames for: bootstrap, then `Gate.login(token)`.
pub fn login(token: &str) -> capnp::Result<Vec<u8>> {
    let mut out = frame(|message| {
        message.init_bootstrap().set_question_id(0);
        Ok(())
    })?;
    out.extend(call(
        1,
        0,
        None,
        gate::Client::TYPE_ID,
        GATE_LOGIN,
        |params| {
            params
                .init_as::<gate::login_params::Builder>()
                .set_token(token);
            Ok(())
        },
    )?);
    Ok(out)
}

/// Frames for: log in, open `db` and `table`, then `gets` pipelined `Table.get(key)` calls.
pub fn pipelined_gets(
    token: &str,
    db: &str,
    table_name: &str,
    key: &str,
    gets: usize,
) -> capnp::Result<Vec<u8>> {
    let mut out = login(token)?;
    out.extend(call(
        2,
        1,
        Some(RESULT_CAP),
        service::Client::TYPE_ID,
        SERVICE_DATABASE,
        |params| {
            params
                .init_as::<service::database_params::Builder>()
                .set_name(db);
            Ok(())
        },
    )?);
    out.extend(call(
        3,
        2,
        Some(RESULT_CAP),
        database::Client::TYPE_ID,
        DATABASE_TABLE,
        |params| {
            params
                .init_as::<database::table_params::Builder>()
                .set_name(table_name);
            Ok(())
        },
    )?);
    for question in 4..4 + gets as u32 {
        out.extend(call(
            question,
            3,
            Some(RESULT_CAP),
            table::Client::TYPE_ID,
            TABLE_GET,
            |params| {
                params.init_as::<table::get_params::Builder>().set_key(key);
                Ok(())
            },
        )?);
    }
    Ok(out)
}

/// One `Call` frame: question `question` calls method `method` of `interface` on the answer
/// to question `on` (its pointer field `field`, or the answer itself).
fn call(
    question: u32,
    on: u32,
    field: Option<u16>,
    interface: u64,
    method: u16,
    params: impl FnOnce(capnp::any_pointer::Builder<'_>) -> capnp::Result<()>,
) -> capnp::Result<Vec<u8>> {
    frame(|message| {
        let mut call = message.init_call();
        call.set_question_id(question);
        call.set_interface_id(interface);
        call.set_method_id(method);
        let mut target = call.reborrow().init_target().init_promised_answer();
        target.set_question_id(on);
        if let Some(field) = field {
            target.init_transform(1).get(0).set_get_pointer_field(field);
        }
        params(call.init_params().init_content())
    })
}

fn frame(fill: impl FnOnce(message::Builder<'_>) -> capnp::Result<()>) -> capnp::Result<Vec<u8>> {
    let mut builder = capnp::message::Builder::new_default();
    fill(builder.init_root())?;
    Ok(capnp::serialize::write_message_to_words(&builder))
}

#[cfg(test)]
mod tests {
    use capnp::capability::RemotePromise;
    use capnp_rpc::rpc_capnp::{message, promised_answer};
    use capnp_rpc::rpc_twoparty_capnp::Side;
    use capnp_rpc::{RpcSystem, twoparty};
    use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

    use super::*;

    /// A call as the wire shows it: (question, interface, method, answer it targets, field).
    type CallShape = (u32, u64, u16, u32, Vec<u16>);

    fn shapes(frames: &[Vec<u8>]) -> Vec<CallShape> {
        frames
            .iter()
            .filter_map(|frame| shape(frame).unwrap())
            .collect()
    }

    fn shape(mut frame: &[u8]) -> capnp::Result<Option<CallShape>> {
        let message = capnp::serialize::read_message(&mut frame, Default::default())?;
        let root = message.get_root::<message::Reader>()?;
        let message::Which::Call(call) = root.which()? else {
            return Ok(None);
        };
        let call = call?;
        let target = match call.get_target()?.which()? {
            capnp_rpc::rpc_capnp::message_target::PromisedAnswer(answer) => answer?,
            _ => return Ok(None),
        };
        let fields = target
            .get_transform()?
            .iter()
            .map(|op| match op.which() {
                Ok(promised_answer::op::GetPointerField(field)) => field,
                _ => u16::MAX,
            })
            .collect();
        Ok(Some((
            call.get_question_id(),
            call.get_interface_id(),
            call.get_method_id(),
            target.get_question_id(),
            fields,
        )))
    }

    /// The frames `bytes` holds, one message each.
    fn split(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut rest = bytes;
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let before = rest;
            capnp::serialize::read_message(&mut rest, Default::default()).unwrap();
            frames.push(before[..before.len() - rest.len()].to_vec());
        }
        frames
    }

    /// What capnp-rpc writes for the same calls made through the generated clients.
    async fn generated(gets: usize) -> Vec<Vec<u8>> {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (read, write) = tokio::io::split(ours);
        let network = twoparty::VatNetwork::new(
            read.compat(),
            write.compat_write(),
            Side::Client,
            Default::default(),
        );
        let mut system = RpcSystem::new(Box::new(network), None);
        let gate: gate::Client = system.bootstrap(Side::Server);
        tokio::task::spawn_local(system);
        let mut login = gate.login_request();
        login.get().set_token("token");
        let login = login.send();
        let mut open = login.pipeline.get_service().database_request();
        open.get().set_name("db");
        let open = open.send();
        let mut table = open.pipeline.get_db().table_request();
        table.get().set_name("table");
        let table = table.send();
        let mut answers: Vec<RemotePromise<table::get_results::Owned>> = Vec::new();
        for _ in 0..gets {
            let mut get = table.pipeline.get_table().get_request();
            get.get().set_key("key");
            answers.push(get.send());
        }
        let (mut read, _write) = tokio::io::split(theirs);
        let mut frames = Vec::new();
        for _ in 0..4 + gets {
            let message =
                capnp_futures::serialize::read_message((&mut read).compat(), Default::default())
                    .await
                    .unwrap();
            let mut builder = capnp::message::Builder::new_default();
            builder
                .set_root(message.get_root::<message::Reader>().unwrap())
                .unwrap();
            frames.push(capnp::serialize::write_message_to_words(&builder));
        }
        frames
    }

    #[test]
    fn raw_calls_are_the_calls_the_generated_clients_make() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let expected = local.block_on(&runtime, generated(2));
        let raw = pipelined_gets("token", "db", "table", "key", 2).unwrap();
        let raw = split(&raw);
        assert_eq!(raw.len(), expected.len());
        assert_eq!(shapes(&raw), shapes(&expected));
        assert_eq!(shapes(&raw).len(), 5);
    }
}
