//! How a syncgroup reads on the command line: `sg show`'s aligned record, `sg list`'s rows,
//! and both as JSON (`--json`: the same object for a syncgroup held here and a proposal
//! waiting here). One [`Shown`] carries what the node says of a syncgroup besides the
//! syncgroup itself (pending, left, who published it), so every form prints the same facts.

use serde_json::json;

use crate::cli::collect::ago;
use crate::cli::output::{Columns, OutputError, count, json_line, outln, shown};
use crate::clock::{SystemTime, TimeSource};
use crate::rpc::app_syncgroups::DESTROYED;
use crate::rpc::syncgroup_wire::read_syncgroup;
use crate::schema::service_capnp::syncgroup_info;
use crate::syncgroup::{Status, Syncgroup};

/// A syncgroup and what this node says of it.
pub struct Shown {
    pub sg: Syncgroup,
    /// This node's copy has not caught up with the admin's checkpoint.
    pub pending: bool,
    /// This node left it.
    pub left: bool,
    /// Who published it here ("" if created or joined here).
    pub publisher: String,
    /// A proposal waiting here for `sg accept` (it shares nothing yet).
    pub proposal: bool,
    /// How this node lost the syncgroup (`Ejected`, `Read revoked`: an admin's notice;
    /// `Destroyed`: learnt from an admin; "" if not), which admin said so or destroyed it,
    /// and when (Unix nanoseconds, 0 if not known).
    pub removed: String,
    pub removed_by: String,
    pub removed_at_nanos: i64,
    /// What a pending copy waits for, and what to do ("" if nothing).
    pub waiting_for: String,
}

impl Shown {
    /// A syncgroup held here, as the node's `SyncgroupInfo` gives it.
    pub fn read(info: syncgroup_info::Reader<'_>) -> anyhow::Result<Shown> {
        Ok(Shown {
            sg: read_syncgroup(info.get_sg()?)?,
            pending: info.get_pending(),
            left: info.get_left(),
            publisher: info.get_publisher()?.to_str()?.to_owned(),
            proposal: false,
            removed: info.get_removed()?.to_str()?.to_owned(),
            removed_by: info.get_removed_by()?.to_str()?.to_owned(),
            removed_at_nanos: info.get_removed_at_nanos(),
            waiting_for: info.get_waiting_for()?.to_str()?.to_owned(),
        })
    }

    /// A proposal waiting here, published by `publisher`.
    pub fn proposal(sg: Syncgroup, publisher: &str) -> Shown {
        Shown {
            sg,
            pending: false,
            left: false,
            publisher: publisher.to_owned(),
            proposal: true,
            removed: String::new(),
            removed_by: String::new(),
            removed_at_nanos: 0,
            waiting_for: String::new(),
        }
    }

    /// This node's state of the syncgroup, a word or two: how it lost it (`Ejected`, `Read
    /// revoked`, `Destroyed`), else its status (`running`, `publish-pending`, ...).
    pub fn state(&self) -> &str {
        if self.removed.is_empty() {
            status(self.sg.status)
        } else {
            &self.removed
        }
    }

    /// A member as the attention lines name it: its chosen name and fingerprint
    /// (`alice (3f2a...)`), or the fingerprint alone if it chose none or is not a member.
    fn who(&self, fingerprint: &str) -> String {
        let name = self
            .sg
            .joiners
            .iter()
            .find(|(member, _)| member.as_str() == fingerprint)
            .map(|(_, info)| info.name.as_str())
            .unwrap_or_default();
        match name {
            "" => fingerprint.to_owned(),
            name => format!("{} ({fingerprint})", shown(name.as_bytes())),
        }
    }

    /// [`Shown::state`] as JSON gives it, lower-case and hyphenated like the statuses:
    /// `running`, `publish-pending`, `publish-rejected`, `ejected`, `read-revoked`,
    /// `destroyed` (as `/status.json` says it).
    pub fn state_id(&self) -> String {
        self.state().to_lowercase().replace(' ', "-")
    }

    /// The lines that say what this node's copy needs: how it lost the syncgroup and what to
    /// do, or what a pending copy waits for. Empty if it needs nothing.
    pub fn attention(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.removed == DESTROYED {
            let by = match self.removed_by.as_str() {
                "" => "an admin".to_owned(),
                admin => format!("admin {}", self.who(admin)),
            };
            let when = match self.removed_at_nanos {
                0 => String::new(),
                at => format!(
                    ", {} ago",
                    ago(SystemTime.now_nanos().saturating_sub(at).max(0))
                ),
            };
            lines.push(format!(
                "Destroyed by {by}{when}: this node no longer syncs it, and app writes under \
                 its prefixes fail NoAccess; its rows stay here; `syncbase sg leave {}` \
                 forgets it",
                self.sg.name
            ));
        } else if !self.removed.is_empty() {
            lines.push(format!(
                "{} (an admin, {}, said so): this node no longer syncs it, and app writes \
                 under its prefixes fail NoAccess; to rejoin, get an invite from an admin and \
                 run `syncbase sg join`",
                self.removed,
                self.who(&self.removed_by)
            ));
        }
        if !self.waiting_for.is_empty() {
            lines.push(format!("pending: {}", self.waiting_for));
        }
        lines
    }

    /// What this node adds to the syncgroup's status: pending, left, proposed.
    fn flags(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if self.proposal {
            flags.push("proposal: shares nothing until `syncbase sg accept NAME` here");
        }
        if self.pending && self.removed.is_empty() {
            flags.push("pending (catching up with its admin)");
        }
        if self.left {
            flags.push("left");
        }
        flags
    }

    /// `sg show`: the name and flags, then one aligned `label value` line per fact and the
    /// members as aligned rows.
    pub fn print(&self) -> Result<(), OutputError> {
        let sg = &self.sg;
        let mut title = format!("syncgroup {}", sg.name);
        for flag in self.flags() {
            title.push_str("  ");
            title.push_str(flag);
        }
        outln!("{title}")?;
        let mut facts = Columns::default();
        facts.row(["id".to_owned(), sg.id.to_hex()]);
        facts.row(["database", sg.db.as_str()]);
        facts.row(["status", self.state()]);
        facts.row(["spec version", sg.spec_version.as_str()]);
        facts.row(["creator".to_owned(), sg.creator.to_string()]);
        if !self.publisher.is_empty() {
            let by = if self.proposal {
                "proposed here by"
            } else {
                "published here by"
            };
            facts.row([by, self.publisher.as_str()]);
        }
        if !sg.spec.description.is_empty() {
            facts.row(["description", sg.spec.description.as_str()]);
        }
        facts.row(["prefixes".to_owned(), scopes(sg).join(" ")]);
        for (tag, list) in &sg.spec.perms.0 {
            let mut allowed: Vec<&str> = list.allowed.iter().map(String::as_str).collect();
            let denied: Vec<&str> = list.denied.iter().map(String::as_str).collect();
            let not = format!("(not {})", denied.join(" "));
            if !denied.is_empty() {
                allowed.push(&not);
            }
            facts.row([format!("{tag:?}"), allowed.join(" ")]);
        }
        let members = count(sg.joiners.len() as u64, "member", "members");
        facts.row(["members", members.as_str()]);
        facts.print("  ")?;
        let mut members = Columns::default();
        for (member, info) in &sg.joiners {
            let address = if info.address.is_empty() {
                "(no address)"
            } else {
                info.address.as_str()
            };
            members.row([
                member.to_string(),
                if info.name.is_empty() {
                    String::new()
                } else {
                    format!("({})", shown(info.name.as_bytes()))
                },
                format!("device {:016x}", info.device.0),
                address.to_owned(),
                if info.is_server { "server" } else { "" }.to_owned(),
            ]);
        }
        members.print("    ")?;
        for line in self.attention() {
            outln!("  {line}")?;
        }
        Ok(())
    }

    /// `sg list`'s row: name, database, status, members, flags.
    pub fn row(&self) -> Vec<String> {
        let sg = &self.sg;
        let mut row = vec![
            sg.name.to_string(),
            sg.db.clone(),
            self.state().to_owned(),
            count(sg.joiners.len() as u64, "member", "members"),
        ];
        if self.proposal {
            row.push(format!("prefixes {}", scopes(sg).join(" ")));
            row.push(format!("published by {}", self.publisher));
        } else {
            row.push(self.flags().join("  "));
        }
        row
    }

    /// The object `sg show --json` and `sg list --json` print.
    pub fn json(&self) -> serde_json::Value {
        let sg = &self.sg;
        let prefixes: Vec<_> = sg
            .spec
            .prefixes
            .iter()
            .map(|scope| json!({"table": scope.table.to_string(), "prefix": scope.prefix.to_string()}))
            .collect();
        let permissions: serde_json::Map<String, serde_json::Value> = sg
            .spec
            .perms
            .0
            .iter()
            .map(|(tag, list)| {
                let entry = json!({"allowed": list.allowed, "denied": list.denied});
                (format!("{tag:?}"), entry)
            })
            .collect();
        let members: Vec<_> = sg
            .joiners
            .iter()
            .map(|(member, info)| {
                json!({
                    "fingerprint": member.to_string(),
                    "name": (!info.name.is_empty()).then_some(&info.name),
                    "device": format!("{:016x}", info.device.0),
                    "address": info.address,
                    "server": info.is_server,
                })
            })
            .collect();
        json!({
            "name": sg.name.to_string(),
            "id": sg.id.to_hex(),
            "database": sg.db,
            "status": self.state_id(),
            "spec_version": sg.spec_version,
            "creator": sg.creator.to_string(),
            "description": sg.spec.description,
            "prefixes": prefixes,
            "permissions": permissions,
            "members": members,
            "pending": self.pending,
            "left": self.left,
            "publisher": (!self.publisher.is_empty()).then_some(&self.publisher),
            "proposal": self.proposal,
            "removed": (!self.removed.is_empty()).then_some(&self.removed),
            "removed_by": (!self.removed_by.is_empty()).then_some(&self.removed_by),
            "removed_at_nanos": (self.removed_at_nanos != 0).then_some(self.removed_at_nanos),
            "waiting_for": (!self.waiting_for.is_empty()).then_some(&self.waiting_for),
        })
    }
}

/// Prints `shown` as `sg list` does: held syncgroups as aligned rows under a header, then
/// proposals under their own heading; or, with `json`, one object each.
pub fn print_list(
    held: &[Shown],
    proposals: &[Shown],
    max_proposals: usize,
    json: bool,
) -> Result<(), OutputError> {
    if json {
        return held
            .iter()
            .chain(proposals)
            .try_for_each(|sg| json_line(&sg.json()));
    }
    if held.is_empty() && proposals.is_empty() {
        return outln!("no syncgroups (create one with `syncbase sg create`, or join one)");
    }
    if !held.is_empty() {
        let mut columns = Columns::default();
        columns.row(["NAME", "DATABASE", "STATUS", "MEMBERS", "NOTES"]);
        held.iter().for_each(|sg| columns.row(sg.row()));
        columns.print("")?;
    }
    if !proposals.is_empty() {
        outln!(
            "proposed here, sharing nothing until accepted (`syncbase sg accept NAME` or `sg \
             reject NAME`; at most {max_proposals} are kept):"
        )?;
        let mut columns = Columns::default();
        proposals.iter().for_each(|sg| columns.row(sg.row()));
        columns.print("")?;
    }
    Ok(())
}

fn status(status: Status) -> &'static str {
    match status {
        Status::PublishPending => "publish-pending",
        Status::PublishRejected => "publish-rejected",
        Status::Running => "running",
        Status::Destroyed => "destroyed",
    }
}

/// A syncgroup's prefixes as TABLE[/PREFIX], the form `--prefix` takes.
fn scopes(sg: &Syncgroup) -> Vec<String> {
    sg.spec
        .prefixes
        .iter()
        .map(crate::genvec::Scope::to_string)
        .collect()
}
