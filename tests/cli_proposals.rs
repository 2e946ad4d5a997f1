//! Security issue 9 through the `syncbase` binary: a node that publishes a syncgroup named
//! after another node only *proposes* it there. Separate `serve` processes over TLS on
//! loopback: a stranger, a read-only member and an ejected member each publish a syncgroup over
//! the host's private rows, and nothing is shared or accepted until the host's operator runs
//! `sg accept` (after `sg reject`, never). A publish invite lets a publish be taken at once,
//! once. Bad input is refused with one error line, a stable id, a non-zero exit, and nothing
//! changed. (Reusing a known syncgroup id under another name needs a chosen id, which the CLI
//! cannot send: tests/syncgroups.rs pins it.)

mod common;

use std::time::{Duration, Instant};

use common::process::{Served, eventually_blocking, failure};

const LIMIT: Duration = Duration::from_secs(20);
/// How long a negative check watches for something that must not happen.
const QUIET: Duration = Duration::from_secs(3);
/// The database the host keeps its private rows in.
const DB: &str = "D";

impl Served {
    fn start_member() -> Served {
        Served::start_in_temp_dir(&["--memory", "--peer-listen", "127.0.0.1:0"])
    }

    /// `syncbase get D TABLE KEY`: the value, or None if the row is absent.
    fn value(&self, table: &str, key: &str) -> Option<String> {
        let output = self.client(&["get", DB, table, key]);
        output
            .status
            .success()
            .then(|| String::from_utf8(output.stdout).unwrap())
    }

    fn put(&self, table: &str, key: &str, value: &str) {
        self.ok(&["put", DB, table, key, value]);
    }

    /// The syncgroup name `HOST:PORT/SUFFIX` routing to this node.
    fn named(&self, suffix: &str) -> String {
        format!("{}/{suffix}", self.peer_addr())
    }

    /// `sg create D NAME --host HOST --prefix …` run here for a syncgroup named after `host`.
    fn propose(&self, host: &Served, suffix: &str, prefixes: &[&str]) -> String {
        let (name, fingerprint) = (host.named(suffix), host.fingerprint());
        let mut args = vec!["sg", "create", DB, &name, "--host", &fingerprint];
        for prefix in prefixes {
            args.extend(["--prefix", prefix]);
        }
        self.ok(&args)
    }
}

fn eventually(what: &str, check: impl FnMut() -> bool) {
    eventually_blocking(what, LIMIT, check);
}

/// Watches for `QUIET` that `check` never holds.
fn never(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + QUIET;
    while Instant::now() < deadline {
        assert!(!check(), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a proposal's publisher is told.
fn assert_proposed(created: &str, name: &str) {
    assert!(
        created.starts_with(&format!("created syncgroup {name} in database ")),
        "{created}"
    );
    assert_eq!(created.lines().count(), 1, "one line: {created}");
    assert!(
        created.contains(&format!(
            "nothing syncs with it until its operator runs `syncbase sg accept {name}` there"
        )),
        "{created}"
    );
}

/// The one `sg list` line of `name`.
fn listed(node: &Served, name: &str) -> Option<String> {
    let list = node.ok(&["sg", "list"]);
    list.lines()
        .find(|line| line.starts_with(&format!("{name}  ")))
        .map(str::to_owned)
}

/// The syncgroups and proposals `sg list` on `node` shows, and its `status` proposal line.
fn holdings(node: &Served) -> (String, Option<String>) {
    let status = node.ok(&["status"]);
    let waiting = status
        .lines()
        .find(|line| line.starts_with("proposals: "))
        .map(str::to_owned);
    (node.ok(&["sg", "list"]), waiting)
}

#[test]
fn a_strangers_publish_over_private_rows_shares_nothing_and_reject_forgets_it() {
    let a = Served::start_member();
    let s = Served::start_member();
    a.put("priv", "secret", "A's secret");
    let name = a.named("mine");

    let created = s.propose(&a, "mine", &["T/p/", "priv"]);
    assert_proposed(&created, &name);
    // S writes under the prefixes it proposed; none of it reaches A, and A's rows stay home.
    s.put("priv", "secret", "S's overwrite");
    s.put("priv", "planted", "by S");
    s.put("T", "p/planted", "by S");
    let leaked = || {
        s.value("priv", "secret").as_deref() != Some("S's overwrite")
            || a.value("priv", "secret").as_deref() != Some("A's secret")
            || a.value("priv", "planted").is_some()
            || a.value("T", "p/planted").is_some()
    };
    never("a proposal shared rows", leaked);
    // S did try: A refused it, since the proposal grants nothing.
    eventually("A to refuse S's sync", || {
        s.ok(&["status"]).contains("NoAccess:")
    });
    // A lists and shows the proposal, and its status counts it.
    let list = a.ok(&["sg", "list"]);
    assert!(list.starts_with("proposed here, sharing nothing"), "{list}");
    let line = listed(&a, &name).expect("A lists the proposal");
    assert!(
        line.contains("  prefixes T/p/ priv  published by ") && line.ends_with(&s.fingerprint()),
        "{line}"
    );
    let proposal = a.json(&["sg", "list", "--json"]);
    assert_eq!(proposal["proposal"], true, "{proposal}");
    assert_eq!(proposal["database"], DB, "{proposal}");
    assert_eq!(
        proposal["publisher"],
        s.fingerprint().as_str(),
        "{proposal}"
    );
    assert_eq!(
        proposal["prefixes"],
        serde_json::json!([{"table": "T", "prefix": "p/"}, {"table": "priv", "prefix": ""}])
    );
    assert_eq!(a.ok(&["sg", "list", DB]), list);
    let other = a.ok(&["sg", "list", "other"]);
    assert!(other.starts_with("no syncgroups"), "{other}");
    let shown = a.ok(&["sg", "show", &name]);
    assert!(
        shown.contains("proposal: shares nothing until")
            && shown.contains(&format!("proposed here by  {}", s.fingerprint())),
        "{shown}"
    );
    let (_, waiting) = holdings(&a);
    assert_eq!(
        waiting.as_deref(),
        Some("proposals: 1 waiting (syncbase sg list; sg accept NAME or sg reject NAME)")
    );

    let rejected = a.ok(&["sg", "reject", &name]);
    assert!(
        rejected.starts_with(&format!("rejected syncgroup {name}: nothing was shared")),
        "{rejected}"
    );
    let (list, waiting) = holdings(&a);
    assert!(list.starts_with("no syncgroups"), "{list}");
    assert_eq!(waiting, None);
    assert!(failure(&a.client(&["sg", "accept", &name])).contains("NoExist:"));
    assert!(failure(&a.client(&["sg", "show", &name])).contains("NoExist:"));
    never("a rejected proposal shared rows", leaked);
}

#[test]
fn an_accepted_proposal_runs_and_syncs_both_ways() {
    let a = Served::start_member();
    let s = Served::start_member();
    a.put("T", "p/from-a", "A's row");
    a.put("priv", "secret", "A's secret");
    let name = a.named("accepted");
    assert_proposed(&s.propose(&a, "accepted", &["T/p/"]), &name);
    s.put("T", "p/from-s", "S's row");

    let accepted = a.ok(&["sg", "accept", &name]);
    assert!(
        accepted.starts_with(&format!(
            "accepted syncgroup {name} in database {DB} (pending"
        )),
        "{accepted}"
    );
    let shown = a.json(&["sg", "show", &name, "--json"]);
    assert_eq!(shown["publisher"], s.fingerprint().as_str(), "{shown}");
    let (list, waiting) = holdings(&a);
    assert!(!list.contains("proposed here"), "{list}");
    assert_eq!(waiting, None);

    eventually("S's row on A", || {
        a.value("T", "p/from-s").as_deref() == Some("S's row")
    });
    eventually("A's row on S", || {
        s.value("T", "p/from-a").as_deref() == Some("A's row")
    });
    for node in [&a, &s] {
        eventually(
            "the syncgroup to run on both nodes with both members",
            || {
                let shown = node.json(&["sg", "show", &name, "--json"]);
                shown["status"] == "running" && shown["members"].as_array().map(Vec::len) == Some(2)
            },
        );
    }
    // Once it caught up, A is an admin of it: it mints invites.
    eventually("A to mint an invite", || {
        a.client(&["sg", "invite", &name]).status.success()
    });
    // Only the accepted prefixes are shared.
    assert_eq!(s.value("priv", "secret"), None);
}

#[test]
fn a_read_only_or_ejected_member_cannot_widen_what_the_host_shares() {
    let a = Served::start_member();
    let r = Served::start_member();
    let e = Served::start_member();
    let real = a.named("real");
    a.ok(&["sg", "create", DB, &real, "--prefix", "shared"]);
    a.put("shared", "k", "A's shared row");
    a.put("priv", "secret", "A's secret");

    let read_invite = a.ok(&["sg", "invite", &real, "--level", "read"]);
    r.ok(&["sg", "join", read_invite.trim()]);
    let write_invite = a.ok(&["sg", "invite", &real, "--level", "read-write"]);
    e.ok(&["sg", "join", write_invite.trim()]);
    for member in [&r, &e] {
        eventually("A's shared row on each member", || {
            member.value("shared", "k").is_some()
        });
    }
    let ejected = a.ok(&["sg", "eject", &real, &e.fingerprint()]);
    assert!(ejected.starts_with("ejected "), "{ejected}");
    let before = a.ok(&["sg", "show", &real]);

    // Each publishes its own syncgroup at A over A's private rows and the shared table.
    for (member, suffix) in [(&r, "r-own"), (&e, "e-own")] {
        let created = member.propose(&a, suffix, &["priv", "shared"]);
        assert_proposed(&created, &a.named(suffix));
        member.put("priv", "secret", "overwritten");
        member.put("priv", "planted", "planted");
        member.put("shared", "k", "overwritten");
    }
    never("a member's proposal shared or accepted rows", || {
        a.value("priv", "secret").as_deref() != Some("A's secret")
            || a.value("priv", "planted").is_some()
            || a.value("shared", "k").as_deref() != Some("A's shared row")
            || r.value("priv", "secret").as_deref() != Some("overwritten")
            || e.value("priv", "secret").as_deref() != Some("overwritten")
    });
    let list = a.ok(&["sg", "list"]);
    for suffix in ["r-own", "e-own"] {
        assert!(
            listed(&a, &a.named(suffix)).is_some_and(|line| line.contains("published by")),
            "{list}"
        );
    }
    let (_, waiting) = holdings(&a);
    assert_eq!(
        waiting.as_deref(),
        Some("proposals: 2 waiting (syncbase sg list; sg accept NAME or sg reject NAME)")
    );
    // A's own syncgroup is as it was: A alone administers it, E is still out.
    let after = a.ok(&["sg", "show", &real]);
    assert_eq!(before, after);
    a.ok(&["sg", "invite", &real]);
}

#[test]
fn a_publish_invite_admits_one_publish_at_once_and_is_then_spent() {
    let a = Served::start_member();
    let p = Served::start_member();
    let q = Served::start_member();
    a.put("T", "from-a", "A's row");
    let token = a.ok(&["sg", "publish-invite", DB]).trim().to_owned();
    assert!(
        token.starts_with(&format!(
            "syncbase-publish://{}@{}/D#",
            a.fingerprint(),
            a.peer_addr()
        )),
        "{token}"
    );

    // No --host: the invite names it. Taken at once: no proposal, and it syncs.
    let name = a.named("invited");
    let created = p.ok(&[
        "sg", "create", DB, &name, "--invite", &token, "--prefix", "T",
    ]);
    assert!(
        created.starts_with(&format!("created syncgroup {name} in database "))
            && !created.contains("proposed"),
        "{created}"
    );
    assert!(listed(&a, &name).is_some(), "{}", a.ok(&["sg", "list"]));
    let (list, waiting) = holdings(&a);
    assert!(!list.contains("proposed here"), "{list}");
    assert_eq!(waiting, None);
    p.put("T", "from-p", "P's row");
    eventually("P's row on A", || {
        a.value("T", "from-p").as_deref() == Some("P's row")
    });
    eventually("A's row on P", || {
        p.value("T", "from-a").as_deref() == Some("A's row")
    });
    for node in [&a, &p] {
        eventually("the invited syncgroup to run on both nodes", || {
            let shown = node.json(&["sg", "show", &name, "--json"]);
            shown["status"] == "running" && shown["members"].as_array().map(Vec::len) == Some(2)
        });
    }

    // Spent (one use), or for another database: refused, and nothing is left anywhere.
    let other_db = a.ok(&["sg", "publish-invite", "other"]).trim().to_owned();
    let expiring = a
        .ok(&["sg", "publish-invite", DB, "--expires", "1"])
        .trim()
        .to_owned();
    let before = a.ok(&["sg", "list"]);
    std::thread::sleep(Duration::from_millis(1100));
    let again = a.named("again");
    for (invite, id) in [
        (&token, "NoAccess:"),
        (&other_db, "InvalidArgument:"),
        (&expiring, "NoAccess:"),
    ] {
        let output = q.client(&[
            "sg", "create", DB, &again, "--invite", invite, "--prefix", "T",
        ]);
        let error = failure(&output);
        assert!(error.contains(id), "{error}");
        assert!(
            !error.contains(invite.rsplit('#').next().unwrap()),
            "{error}"
        );
    }
    assert_eq!(a.ok(&["sg", "list"]), before);
    assert!(q.ok(&["sg", "list"]).starts_with("no syncgroups"));
}

#[test]
fn bad_proposal_input_fails_with_one_clear_line_and_changes_nothing() {
    let a = Served::start_member();
    let s = Served::start_member();
    let real = a.named("real");
    a.ok(&["sg", "create", DB, &real, "--prefix", "T"]);
    let join_invite = a.ok(&["sg", "invite", &real]).trim().to_owned();
    let publish_invite = a.ok(&["sg", "publish-invite", DB]).trim().to_owned();
    let before = a.ok(&["sg", "list"]);

    let (a_fp, s_fp) = (a.fingerprint(), s.fingerprint());
    let (unknown, x) = (a.named("unknown"), a.named("x"));
    #[rustfmt::skip]
    let cases: Vec<(&Served, Vec<&str>, &str, &str)> = vec![
        (&a, vec!["accept", &unknown], "NoExist:", "proposed"),
        (&a, vec!["reject", &unknown], "NoExist:", "proposed"),
        // A syncgroup A holds is not a proposal.
        (&a, vec!["accept", &real], "NoExist:", "proposed"),
        (&a, vec!["reject", &real], "NoExist:", "proposed"),
        (&s, vec!["create", "nodb", &x, "--host", &a_fp, "--prefix", "T"], "NoExist:", "database"),
        (&s, vec!["create", DB, &x, "--invite", "syncbase-publish://nonsense", "--prefix", "T"],
            "InvalidArgument:", "malformed"),
        (&s, vec!["create", DB, &x, "--invite", &join_invite, "--prefix", "T"],
            "InvalidArgument:", "sg join"),
        // The invite names A; --host names another node.
        (&s, vec!["create", DB, &x, "--invite", &publish_invite, "--host", &s_fp, "--prefix", "T"],
            "InvalidArgument:", "another node"),
        // The invite is for A's address; the name routes elsewhere.
        (&s, vec!["create", DB, "127.0.0.1:1/x", "--invite", &publish_invite, "--prefix", "T"],
            "InvalidArgument:", "publish invite is for"),
        (&s, vec!["join", &publish_invite], "InvalidArgument:", "sg create --invite"),
        (&s, vec!["join", "syncbase:/mistyped#0123456789abcdef"], "InvalidArgument:", "mistyped"),
    ];
    for (node, args, id, says) in cases {
        let full: Vec<&str> = std::iter::once("sg").chain(args.iter().copied()).collect();
        let error = failure(&node.client(&full));
        assert!(
            error.contains(id) && error.contains(says),
            "sg {args:?}: {error}"
        );
        for secret in [&publish_invite, &join_invite, "#0123456789abcdef"] {
            let secret = secret.rsplit('#').next().unwrap();
            assert!(!error.contains(secret), "a secret echoed: {error}");
        }
    }

    assert_eq!(a.ok(&["sg", "list"]), before);
    assert!(s.ok(&["sg", "list"]).starts_with("no syncgroups"));
    // The publish invite was not spent by the refused attempts.
    let created = s.ok(&[
        "sg",
        "create",
        DB,
        &x,
        "--invite",
        &publish_invite,
        "--prefix",
        "T",
    ]);
    assert!(!created.contains("proposed"), "{created}");
}
