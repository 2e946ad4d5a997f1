//! Cap'n Proto RPC messages written by hand, so an attacker can send calls without running an
//! RPC system (which would read the answers). Calls are pipelined on promised answers:
//! question 0 bootstraps the `Gate`, 1 logs in, 2 opens the database, 3 the table, and every
//! later question is a `Table.get` on it.

use capnp::traits::HasTypeId;
use capnp_rpc::rpc_capnp::message;

use crate::schema::service_capnp::{database, gate, service, table};

/// Frames for: bootstrap, then `Gate.login(token)`.
pub fn login(token: &str) -> capnp::Result<Vec<u8>> {
    let mut out = frame(|message| {
        message.init_bootstrap().set_question_id(0);
        Ok(())
    })?;
    out.extend(call(1, 0, None, gate::Client::TYPE_ID, 0, |params| {
        params
            .init_as::<gate::login_params::Builder>()
            .set_token(token);
        Ok(())
    })?);
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
        Some(0),
        service::Client::TYPE_ID,
        0,
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
        Some(0),
        database::Client::TYPE_ID,
        0,
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
            Some(0),
            table::Client::TYPE_ID,
            1,
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
