//! The `syncbase sg` verbs: create, join, list, show, invite, eject and leave syncgroups,
//! through the running node's app API (`Service.syncgroups`); their arguments are `args`
//! ([`SgAction`]). Proposals (accept, reject, publish invites) are run by `cli::proposals`.

mod args;

pub use args::SgAction;

use self::args::{CreateArgs, LevelArg};
use crate::cli::client::{Target, with_service};
use crate::cli::output::{OutputError, out, outln};
use crate::cli::proposals;
use crate::error::Error;
use crate::rpc::client::remote_error;
use crate::rpc::syncgroup_wire::{read_syncgroup, write_spec};
use crate::schema::service_capnp::{InviteLevel, service, syncgroup_info, syncgroups};
use crate::schema::types_capnp::SyncgroupStatus;
use crate::syncgroup::access::Level;
use crate::syncgroup::{Permissions, Spec, Syncgroup};

/// `sg ...`: runs one syncgroup action.
pub fn run(action: SgAction) -> anyhow::Result<()> {
    match action {
        SgAction::Create(args) => create(&args),
        SgAction::Join {
            target,
            invite_or_name,
            admin,
        } => join(&target, &invite_or_name, admin.as_deref()),
        SgAction::List { target, db } => list(&target, &db),
        SgAction::Show { target, name } => show(&target, &name),
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

/// `sg create`: creates the syncgroup and prints it.
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
        let info = response.get()?.get_sg()?;
        print_syncgroup(info)?;
        if info.get_sg()?.get_status()? == SyncgroupStatus::PublishPending {
            outln!(
                "proposed to its host: nothing syncs with it until its operator runs \
                 `syncbase sg accept {}` there",
                args.name
            )?;
        }
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
    let response = service
        .identity_request()
        .send()
        .promise
        .await
        .map_err(remote_error)?;
    let me = response.get()?.get_fingerprint()?.to_str()?.to_owned();
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

/// `sg join`: joins with an invite token, or by name at the admin with `admin`'s fingerprint.
fn join(target: &Target, invite_or_name: &str, admin: Option<&str>) -> anyhow::Result<()> {
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
        let response = request.send().promise.await.map_err(remote_error)?;
        print_syncgroup(response.get()?.get_sg()?)
    })
}

/// `sg list`: one line per syncgroup.
fn list(target: &Target, db: &str) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut request = syncgroups_of(&service).list_request();
        request.get().set_database(db);
        let response = request.send().promise.await.map_err(remote_error)?;
        let list = response.get()?.get_syncgroups()?;
        let proposals: Vec<_> = super::proposals::fetch(&service)
            .await?
            .into_iter()
            .filter(|proposal| db.is_empty() || proposal.sg.db == db)
            .collect();
        if list.is_empty() && proposals.is_empty() {
            outln!("no syncgroups (create one with `syncbase sg create`, or join one)")?;
        }
        for info in list {
            let sg = info.get_sg()?;
            outln!(
                "{}  database {}  {}  {} members{}",
                sg.get_name()?.to_str()?,
                info.get_database()?.to_str()?,
                status(sg.get_status()?),
                sg.get_joiners()?.len(),
                flags(info),
            )?;
        }
        super::proposals::print(&proposals)?;
        Ok(())
    })
}

/// `sg show`: everything about one syncgroup, or about a proposal of that name waiting here
/// (so its operator can see what it would share, and with whom, before `sg accept`).
fn show(target: &Target, name: &str) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut request = syncgroups_of(&service).get_request();
        request.get().set_name(name);
        let error = match request.send().promise.await {
            Ok(response) => return print_syncgroup(response.get()?.get_sg()?),
            Err(error) => error,
        };
        if !matches!(Error::from(error.clone()), Error::NoExist(_)) {
            return Err(remote_error(error));
        }
        let error = remote_error(error);
        let proposals = super::proposals::fetch(&service).await?;
        match proposals.iter().find(|p| p.sg.name.as_str() == name) {
            Some(proposal) => {
                super::proposals::print_one(proposal)?;
                Ok(())
            }
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
        Ok(())
    })
}

/// How `sg access` changes one identity's permissions.
enum AccessChange {
    /// List it at a level (in addition to what it has).
    Grant(Level),
    /// Remove it from every access list (it stays listed as a member).
    Revoke,
}

/// `sg access`: changes one identity's permissions with a spec change at the current spec
/// version (a concurrent change makes it fail with `BadVersion:`; run it again).
fn access(target: &Target, name: &str, who: &str, change: AccessChange) -> anyhow::Result<()> {
    let who = crate::rpc::syncgroup_wire::identity(who)?;
    with_service(target, |service| async move {
        let syncgroups = syncgroups_of(&service);
        let mut request = syncgroups.get_request();
        request.get().set_name(name);
        let response = request.send().promise.await.map_err(remote_error)?;
        let sg = read_syncgroup(response.get()?.get_sg()?.get_sg()?)?;
        let mut spec = sg.spec;
        match change {
            AccessChange::Grant(level) => spec.perms.grant(level, &who),
            AccessChange::Revoke => {
                if !spec.perms.revoke(&who) {
                    anyhow::bail!("NoExist: {who} holds no permission in {name}");
                }
            }
        }
        let mut request = syncgroups.set_spec_request();
        request.get().set_name(name);
        request.get().set_version(sg.spec_version.as_str());
        write_spec(&spec, request.get().init_spec());
        let response = request.send().promise.await.map_err(remote_error)?;
        print_syncgroup(response.get()?.get_sg()?)
    })
}

/// `sg leave`: stops syncing the syncgroup here; the data stays.
fn leave(target: &Target, name: &str) -> anyhow::Result<()> {
    with_service(target, |service| async move {
        let mut request = syncgroups_of(&service).leave_request();
        request.get().set_name(name);
        request.send().promise.await.map_err(remote_error)?;
        outln!("left {name} (its rows stay here; join again to resume syncing)")?;
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

fn status(status: SyncgroupStatus) -> &'static str {
    match status {
        SyncgroupStatus::PublishPending => "publish-pending",
        SyncgroupStatus::PublishRejected => "publish-rejected",
        SyncgroupStatus::Running => "running",
    }
}

fn flags(info: syncgroup_info::Reader<'_>) -> String {
    let mut flags = String::new();
    if info.get_pending() {
        flags.push_str("  pending (catching up with its admin)");
    }
    if info.get_left() {
        flags.push_str("  left");
    }
    flags
}

pub(super) fn print_syncgroup(info: syncgroup_info::Reader<'_>) -> anyhow::Result<()> {
    let sg = read_syncgroup(info.get_sg()?)?;
    let publisher = info.get_publisher()?.to_str()?;
    let published = if publisher.is_empty() {
        String::new()
    } else {
        format!("published here by {publisher}")
    };
    print_record(&sg, &flags(info), &published)?;
    Ok(())
}

/// Prints a syncgroup: `flags` after its name, and `published` (if not empty) as a line of its
/// own.
pub(super) fn print_record(
    sg: &Syncgroup,
    flags: &str,
    published: &str,
) -> Result<(), OutputError> {
    outln!("syncgroup {}{flags}", sg.name)?;
    outln!("  id {}", sg.id.to_hex())?;
    outln!("  database {}", sg.db)?;
    outln!("  status {:?}", sg.status)?;
    outln!("  spec version {}", sg.spec_version)?;
    outln!("  creator {}", sg.creator)?;
    if !published.is_empty() {
        outln!("  {published}")?;
    }
    if !sg.spec.description.is_empty() {
        outln!("  description {}", sg.spec.description)?;
    }
    outln!("  prefixes {}", scopes(sg).join(" "))?;
    for (tag, list) in &sg.spec.perms.0 {
        let allowed: Vec<&str> = list.allowed.iter().map(String::as_str).collect();
        out!("  {tag:?}: {}", allowed.join(" "))?;
        if !list.denied.is_empty() {
            let denied: Vec<&str> = list.denied.iter().map(String::as_str).collect();
            out!(" (not {})", denied.join(" "))?;
        }
        outln!()?;
    }
    outln!("  members")?;
    for (member, info) in &sg.joiners {
        let address = if info.address.is_empty() {
            "(no address)"
        } else {
            info.address.as_str()
        };
        let server = if info.is_server { " server" } else { "" };
        outln!(
            "    {member} device {:016x} {address}{server}",
            info.device.0
        )?;
    }
    Ok(())
}

/// A syncgroup's prefixes as TABLE/PREFIX, the form `--prefix` takes.
pub(super) fn scopes(sg: &Syncgroup) -> Vec<String> {
    sg.spec
        .prefixes
        .iter()
        .map(|scope| format!("{}/{}", scope.table, scope.prefix))
        .collect()
}
