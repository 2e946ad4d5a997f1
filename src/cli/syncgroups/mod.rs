//! The `syncbase sg` verbs: create, join, list, show, invite, eject, leave and destroy syncgroups,
//! through the running node's app API (`Service.syncgroups`); their arguments are `args`
//! ([`SgAction`]); `initial_sync` is `sg join`'s wait for the first sync, with its progress
//! bar. Proposals (accept, reject, publish invites) are run by `cli::proposals`.

mod args;
mod initial_sync;
mod show;

pub use args::SgAction;
pub(crate) use initial_sync::percent_done;
pub(super) use show::Shown;

use std::time::Duration;

use self::args::{CreateArgs, LevelArg};
use crate::cli::client::{Target, with_service};
use crate::cli::output::{json_line, outln};
use crate::cli::proposals;
use crate::error::Error;
use crate::rpc::app_syncgroups::DESTROYED;
use crate::rpc::client::remote_error;
use crate::rpc::syncgroup_wire::{read_syncgroup, write_spec};
use crate::schema::service_capnp::{InviteLevel, service, syncgroups};
use crate::syncgroup::access::Level;
use crate::syncgroup::proposal::MAX_PROPOSALS;
use crate::syncgroup::{Permissions, Spec, Status};

/// `sg ...`: runs one syncgroup action.
pub fn run(action: SgAction) -> anyhow::Result<()> {
    match action {
        SgAction::Create(args) => create(&args),
        SgAction::Join {
            target,
            invite_or_name,
            admin,
            no_wait,
            timeout,
        } => {
            let wait = (!no_wait).then(|| Duration::from_secs(timeout));
            join(&target, &invite_or_name, admin.as_deref(), wait)
        }
        SgAction::List { target, db, json } => list(&target, &db, json),
        SgAction::Show { target, name, json } => show(&target, &name, json),
        SgAction::Invite {
            target,
            name,
            level,
            expires,
            uses,
        } => invite(&target, &name, level, expires, uses),
        SgAction::Eject {
            target,
            name,
            fingerprint,
        } => eject(&target, &name, &fingerprint),
        SgAction::Grant {
            target,
            name,
            fingerprint,
            level,
        } => access(
            &target,
            &name,
            &fingerprint,
            AccessChange::Grant(level.into()),
        ),
        SgAction::Revoke {
            target,
            name,
            fingerprint,
        } => access(&target, &name, &fingerprint, AccessChange::Revoke),
        SgAction::Leave { target, name } => leave(&target, &name),
        SgAction::Destroy { target, name } => destroy(&target, &name),
        SgAction::Accept { target, name } => proposals::accept(&target, &name),
        SgAction::Reject { target, name } => proposals::reject(&target, &name),
        SgAction::PublishInvite {
            target,
            db,
            expires,
            uses,
        } => proposals::publish_invite(&target, &db, expires, uses),
    }
}

/// `sg create`: creates the syncgroup and says so in one line (and, if it waits for its
/// host's operator, what for).
fn create(args: &CreateArgs) -> anyhow::Result<()> {
    let prefixes = super::peers::parse_scopes(&args.prefixes)?;
    with_service(&args.target, |service| async move {
        let perms = permissions(&service, args).await?;
        let spec = Spec {
            description: args.description.to_owned(),
            perms,
            prefixes,
            mount_tables: Vec::new(),
            is_private: false,
        };
        let mut request = syncgroups_of(&service).create_request();
        request.get().set_database(&args.db);
        request.get().set_name(&args.name);
        request
            .get()
            .set_host_fingerprint(args.host.as_deref().unwrap_or_default());
        request
            .get()
            .set_publish_invite(args.invite.as_deref().unwrap_or_default());
        write_spec(&spec, request.get().init_spec());
        let response = request.send().promise.await.map_err(remote_error)?;
        let shown = Shown::read(response.get()?.get_sg()?)?;
        let proposed = if shown.sg.status == Status::PublishPending {
            format!(
                "; proposed to its host: nothing syncs with it until its operator runs \
                 `syncbase sg accept {}` there",
                args.name
            )
        } else {
            String::new()
        };
        outln!(
            "created syncgroup {} in database {}{proposed}",
            args.name,
            args.db
        )?;
        Ok(())
    })
}

/// The permissions `sg create` sends: none (the node alone) unless members are named, then
/// this node and the named admins as admins, writers and readers at their levels.
async fn permissions(service: &service::Client, args: &CreateArgs) -> anyhow::Result<Permissions> {
    let mut perms = Permissions::default();
    if args.admins.is_empty() && args.writers.is_empty() && args.readers.is_empty() {
        return Ok(perms);
    }
    let me = crate::cli::peers::Identity::fetch(service)
        .await?
        .fingerprint;
    let named = [
        (Level::Admin, std::slice::from_ref(&me)),
        (Level::Admin, args.admins.as_slice()),
        (Level::ReadWrite, args.writers.as_slice()),
        (Level::Read, args.readers.as_slice()),
    ];
    for (level, identities) in named {
        for identity in identities {
            for tag in level.tags() {
                perms
                    .0
                    .entry(*tag)
                    .or_default()
                    .allowed
                    .insert(identity.clone());
            }
        }
    }
    Ok(perms)
}

/// `sg join`: joins with an invite token, or by name at the admin with `admin`'s fingerprint,
/// and says so in one line; then, given `wait`, waits at most that long for the initial sync
/// (`initial_sync`).
fn join(
    target: &Target,
    invite_or_name: &str,
    admin: Option<&str>,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut request = syncgroups_of(&service).join_request();
        match admin {
            Some(admin) => {
                request.get().set_name(invite_or_name);
                request.get().set_admin_fingerprint(admin);
            }
            None if invite_or_name.starts_with("syncbase://") => {
                request.get().set_invite(invite_or_name);
            }
            None if invite_or_name.starts_with("syncbase-publish://") => anyhow::bail!(
                "InvalidArgument: this is a publish invite (syncbase-publish://), which lets a \
                 node create a syncgroup at its host: give it to `sg create --invite`"
            ),
            None => anyhow::bail!(
                "InvalidArgument: {:?} is not an invite token (syncbase://...); to join by name, \
                 give the admin node's fingerprint with --admin",
                // Never echo what may be an invite's secret.
                invite_or_name.split('#').next().unwrap_or_default()
            ),
        }
        let before = match wait {
            Some(_) => Some(initial_sync::Before::take(&service).await?),
            None => None,
        };
        let response = request.send().promise.await.map_err(remote_error)?;
        let shown = Shown::read(response.get()?.get_sg()?)?;
        changed("joined", &shown)?;
        if let (Some(timeout), Some(before)) = (wait, &before) {
            initial_sync::wait(&service, shown.sg.name.as_str(), before, timeout).await?;
        }
        Ok(())
    })
}

/// The one line a verb that changed a syncgroup prints: `VERB syncgroup NAME in database DB`,
/// and `(pending: ...)` while this node catches up with its admin.
pub(super) fn changed(verb: &str, shown: &Shown) -> anyhow::Result<()> {
    let pending = if shown.pending {
        " (pending: catching up with its admin)"
    } else {
        ""
    };
    outln!(
        "{verb} syncgroup {} in database {}{pending}",
        shown.sg.name,
        shown.sg.db
    )?;
    Ok(())
}

/// `sg list`: aligned rows, or one JSON object per syncgroup and proposal.
fn list(target: &Target, db: &str, json: bool) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut request = syncgroups_of(&service).list_request();
        request.get().set_database(db);
        let response = request.send().promise.await.map_err(remote_error)?;
        let held = response
            .get()?
            .get_syncgroups()?
            .iter()
            .map(Shown::read)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let proposals: Vec<_> = super::proposals::fetch(&service)
            .await?
            .into_iter()
            .filter(|proposal| db.is_empty() || proposal.sg.db == db)
            .map(|proposal| Shown::proposal(proposal.sg, &proposal.publisher))
            .collect();
        show::print_list(&held, &proposals, MAX_PROPOSALS, json)?;
        Ok(())
    })
}

/// `sg show`: everything about one syncgroup, or about a proposal of that name waiting here
/// (so its operator can see what it would share, and with whom, before `sg accept`).
fn show(target: &Target, name: &str, json: bool) -> anyhow::Result<()> {
    let print = |shown: Shown| -> anyhow::Result<()> {
        if json {
            json_line(&shown.json())?;
        } else {
            shown.print()?;
        }
        Ok(())
    };
    with_service(target, |service| async move {
        let mut request = syncgroups_of(&service).get_request();
        request.get().set_name(name);
        let error = match request.send().promise.await {
            Ok(response) => return print(Shown::read(response.get()?.get_sg()?)?),
            Err(error) => error,
        };
        if !matches!(Error::from(error.clone()), Error::NoExist(_)) {
            return Err(remote_error(error));
        }
        let error = remote_error(error);
        let proposals = super::proposals::fetch(&service).await?;
        match proposals.into_iter().find(|p| p.sg.name.as_str() == name) {
            Some(proposal) => print(Shown::proposal(proposal.sg, &proposal.publisher)),
            None => Err(error),
        }
    })
}

/// `sg invite`: prints only the token, so `$(syncbase sg invite ...)` captures it.
fn invite(
    target: &Target,
    name: &str,
    level: LevelArg,
    expires_in_seconds: Option<u64>,
    uses: u32,
) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut request = syncgroups_of(&service).invite_request();
        request.get().set_name(name);
        request.get().set_level(match level {
            LevelArg::Read => InviteLevel::Read,
            LevelArg::ReadWrite => InviteLevel::ReadWrite,
            LevelArg::Admin => InviteLevel::Admin,
        });
        request
            .get()
            .set_expires_in_seconds(expires_in_seconds.unwrap_or(0));
        request.get().set_uses(uses);
        let response = request.send().promise.await.map_err(remote_error)?;
        outln!("{}", response.get()?.get_token()?.to_str()?)?;
        Ok(())
    })
}

/// `sg eject`: removes a member and its permissions.
fn eject(target: &Target, name: &str, member: &str) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut request = syncgroups_of(&service).eject_request();
        request.get().set_name(name);
        request.get().set_member(member);
        request.send().promise.await.map_err(remote_error)?;
        outln!("ejected {member} from {name}")?;
        warn_if_declared(&service, name, member).await
    })
}

/// After `member` lost `name` (eject, revoke): a warning on stderr if it is also a declared
/// peer sharing rows under the syncgroup's prefixes, which keep syncing through that
/// declaration.
async fn warn_if_declared(
    service: &service::Client,
    name: &str,
    member: &str,
) -> anyhow::Result<()> {
    let mut request = syncgroups_of(service).get_request();
    request.get().set_name(name);
    let response = request.send().promise.await.map_err(remote_error)?;
    let sg = read_syncgroup(response.get()?.get_sg()?.get_sg()?)?;
    let member = member.to_ascii_lowercase();
    let sharing =
        crate::cli::peers::declared_sharing(service, &sg.db, &sg.spec.prefixes, Some(&member))
            .await?;
    for peer in sharing {
        eprintln!(
            "syncbase: warning: {peer} is also a declared peer of this node: rows it shares \
             there keep syncing with it, the syncgroup aside; `syncbase peer remove {member}` \
             stops that"
        );
    }
    Ok(())
}

/// How `sg access` changes one identity's permissions.
enum AccessChange {
    /// List it at a level (in addition to what it has).
    Grant(Level),
    /// Remove it from every access list (it stays listed as a member).
    Revoke,
}

/// `sg access`: changes one identity's permissions with a spec change at the current spec
/// version (a concurrent change makes it fail with `BadVersion:`; run it again), and says
/// what changed in one line.
fn access(target: &Target, name: &str, who: &str, change: AccessChange) -> anyhow::Result<()> {
    let who = crate::rpc::syncgroup_wire::identity(who)?;
    with_service(target, |service| async move {
        let syncgroups = syncgroups_of(&service);
        let mut request = syncgroups.get_request();
        request.get().set_name(name);
        let response = request.send().promise.await.map_err(remote_error)?;
        let sg = read_syncgroup(response.get()?.get_sg()?.get_sg()?)?;
        let mut spec = sg.spec;
        let line = match change {
            AccessChange::Grant(level) => {
                spec.perms.grant(level, &who);
                format!("granted {} in {name} to {who}", level_word(level))
            }
            AccessChange::Revoke => {
                if !spec.perms.revoke(&who) {
                    anyhow::bail!("NoExist: {who} holds no permission in {name}");
                }
                format!("revoked every permission of {who} in {name}")
            }
        };
        let mut request = syncgroups.set_spec_request();
        request.get().set_name(name);
        request.get().set_version(sg.spec_version.as_str());
        write_spec(&spec, request.get().init_spec());
        request.send().promise.await.map_err(remote_error)?;
        outln!("{line}")?;
        if matches!(change, AccessChange::Revoke) {
            warn_if_declared(&service, name, who.as_str()).await?;
        }
        Ok(())
    })
}

/// A level as `--level` spells it.
fn level_word(level: Level) -> &'static str {
    match level {
        Level::Read => "read",
        Level::ReadWrite => "read-write",
        Level::Admin => "admin",
    }
}

/// `sg leave`: stops syncing the syncgroup here; the data stays. A destroyed one is
/// forgotten (the line says so: joining again cannot resume it); one this node lost (ejected,
/// read revoked) needs a new invite to join again, which the line says.
fn leave(target: &Target, name: &str) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut get = syncgroups_of(&service).get_request();
        get.get().set_name(name);
        let response = get.send().promise.await.map_err(remote_error)?;
        let shown = Shown::read(response.get()?.get_sg()?)?;
        if shown.left && shown.removed != DESTROYED {
            outln!(
                "changed nothing: this node already left syncgroup {name} (`sg join` syncs it again)"
            )?;
            return Ok(());
        }
        let removed = shown.removed;
        let mut request = syncgroups_of(&service).leave_request();
        request.get().set_name(name);
        request.send().promise.await.map_err(remote_error)?;
        outln!("{}", left_line(name, &removed))?;
        Ok(())
    })
}

/// `sg leave`'s line, given how this node lost the syncgroup (`removed`: "" if it did not).
fn left_line(name: &str, removed: &str) -> String {
    match removed {
        "" => format!("left syncgroup {name} (its rows stay here; join again to resume syncing)"),
        DESTROYED => format!("forgot destroyed syncgroup {name} (its rows stay here)"),
        how => format!(
            "left syncgroup {name} (its rows stay here; this node was {}, so joining again \
             needs a new invite from an admin: `syncbase sg join TOKEN`)",
            how.to_lowercase()
        ),
    }
}

/// `sg destroy`: destroys the syncgroup for good (this node must be an admin).
fn destroy(target: &Target, name: &str) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut request = syncgroups_of(&service).destroy_request();
        request.get().set_name(name);
        request.send().promise.await.map_err(remote_error)?;
        outln!(
            "destroyed syncgroup {name} (its rows stay on every node; members stop syncing it \
             as they learn it from an admin)"
        )?;
        Ok(())
    })
}

pub(super) fn syncgroups_of(service: &service::Client) -> syncgroups::Client {
    service
        .syncgroups_request()
        .send()
        .pipeline
        .get_syncgroups()
}

/// What needs attention among the syncgroups held here: each syncgroup this node lost or
/// whose copy is pending, with its lines saying what happened and what to do.
pub(crate) async fn attention(
    service: &service::Client,
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut request = syncgroups_of(service).list_request();
    request.get().set_database("");
    let response = request.send().promise.await.map_err(remote_error)?;
    let mut needing = Vec::new();
    for info in response.get()?.get_syncgroups()? {
        let shown = Shown::read(info)?;
        let mut lines = shown.attention();
        if !shown.removed.is_empty() {
            let sg = &shown.sg;
            let peers =
                crate::cli::peers::declared_sharing(service, &sg.db, &sg.spec.prefixes, None);
            for peer in peers.await? {
                lines.push(format!(
                    "rows under its prefixes still sync with declared peer {peer}, and this \
                     node's writes to them are accepted; `syncbase peer remove` stops that"
                ));
            }
        }
        if !lines.is_empty() {
            needing.push((shown.sg.name.to_string(), lines));
        }
    }
    Ok(needing)
}

/// `status`'s syncgroup lines: one per line of [`attention`], `syncgroup NAME: LINE`.
pub(crate) async fn print_attention(service: &service::Client) -> anyhow::Result<()> {
    for (name, lines) in attention(service).await? {
        for line in lines {
            outln!("syncgroup {name}: {line}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::left_line;

    #[test]
    fn leaving_a_lost_syncgroup_says_a_new_invite_is_needed() {
        assert!(left_line("h:1/g", "").ends_with("join again to resume syncing)"));
        assert!(left_line("h:1/g", "Destroyed").starts_with("forgot destroyed syncgroup"));
        for lost in ["Ejected", "Read revoked"] {
            let line = left_line("h:1/g", lost);
            assert!(line.starts_with("left syncgroup h:1/g"), "{line}");
            assert!(line.contains("needs a new invite"), "{line}");
            assert!(!line.contains("resume"), "{line}");
        }
    }
}
