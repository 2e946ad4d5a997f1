//! The faults a new user hits at the command line (issue 13), each through the binary: errors
//! that name the real cause and the fix (a refused or missing token, a data directory no node
//! ran in, the peer port given as the app port, a used-up invite, a non-admin invite, a
//! publish the host refused, a config's bad peer, a value over the limit), one address
//! parser, one scope syntax, and what `peer add` and `peer remove` say and do.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::process::{BIN, Served, eventually_blocking, failure, stdout};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn member(extra: &[&str]) -> Served {
    let mut args = vec!["--memory"];
    args.extend_from_slice(extra);
    Served::start_in_temp_dir(&args)
}

#[test]
fn a_refused_or_missing_token_names_the_file_read_not_a_stopped_node() {
    let node = member(&[]);
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("other.token");
    std::fs::write(&wrong, "0".repeat(64)).unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let wrong = wrong.to_str().unwrap();
    let data_dir = node.path().to_str().unwrap();

    let refused = failure(&run(&[
        "get",
        "--data-dir",
        data_dir,
        "--token-file",
        wrong,
        "db",
        "t",
        "k",
    ]));
    assert!(
        refused.starts_with("syncbase: error: NoAccess: "),
        "{refused}"
    );
    assert!(
        refused.contains("refused the client token") && refused.contains(wrong),
        "{refused}"
    );

    let missing = dir.path().join("missing.token");
    let missing = missing.to_str().unwrap();
    let absent = failure(&run(&[
        "get",
        "--data-dir",
        data_dir,
        "--token-file",
        missing,
        "db",
        "t",
        "k",
    ]));
    assert!(
        absent.contains(missing) && absent.contains("--token-file"),
        "{absent}"
    );
    assert!(absent.contains("does not exist"), "{absent}");

    let empty = dir.path().to_str().unwrap();
    let no_node = failure(&run(&["get", "--data-dir", empty, "db", "t", "k"]));
    assert!(
        no_node.contains(&format!("{empty}/client.token does not exist")),
        "{no_node}"
    );
    assert!(
        no_node.contains(&format!("syncbase serve --data-dir {empty}")),
        "{no_node}"
    );
    for line in [&refused, &absent, &no_node] {
        assert!(!line.contains("is the node running?"), "{line}");
    }
    assert!(node.stop());
}

#[test]
fn the_peer_port_given_as_the_app_port_is_named_with_the_app_port() {
    let node = member(&["--peer-listen", "127.0.0.1:0"]);
    let app = std::fs::read_to_string(node.path().join("node.addr")).unwrap();
    let peer = node.peer_addr();
    let error = failure(&node.client(&["get", "--addr", &peer, "db", "t", "k"]));
    assert!(error.contains("peer port"), "{error}");
    assert!(error.contains(&format!("--addr {}", app.trim())), "{error}");
    assert!(node.stop());
}

#[test]
fn every_address_is_read_by_one_parser_that_resolves_names() {
    let node = member(&["--peer-listen", "localhost:0"]);
    let dir = tempfile::tempdir().unwrap();
    let mut by_name = Command::new(BIN)
        .args(["serve", "--memory", "--listen", "localhost:0", "--data-dir"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually_blocking(
        "serve --listen localhost:0",
        Duration::from_secs(20),
        || dir.path().join("node.addr").exists(),
    );
    let _ = by_name.kill();
    let _ = by_name.wait();
    let port = std::fs::read_to_string(node.path().join("node.addr")).unwrap();
    let port = port.trim().rsplit_once(':').unwrap().1.to_owned();
    let absent = node.client(&[
        "get",
        "--addr",
        &format!("localhost:{port}"),
        "db",
        "t",
        "k",
    ]);
    assert!(
        failure(&absent).contains("NoExist:"),
        "the node answered by name"
    );

    let fp = "a".repeat(64);
    let errors = [
        String::from_utf8(run(&["get", "--addr", "::1:7700", "db", "t", "k"]).stderr).unwrap(),
        String::from_utf8(run(&["serve", "--listen", "nowhere", "--memory"]).stderr).unwrap(),
        failure(&node.client(&["peer", "add", "nowhere", &fp, "db", "--prefix", "t"])),
    ];
    for error in errors {
        assert!(error.contains("expected HOST:PORT"), "{error}");
    }
    assert!(node.stop());
}

#[test]
fn a_config_listen_address_may_be_a_name_and_a_bad_peer_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "listen = \"localhost:0\"\n").unwrap();
    let node = Served::start(
        dir.path(),
        &["--memory", "--config", config.to_str().unwrap()],
    );
    assert!(node.stop());

    let text = "[[sync.peers]]\naddress = \"127.0.0.1:9\"\nfingerprint = \"xyz\"\n\
                database = \"db\"\nscopes = [\"t\"]\n";
    std::fs::write(&config, text).unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--memory", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let error = failure(&output);
    assert!(error.contains(config.to_str().unwrap()), "no file: {error}");
    assert!(
        error.contains("sync.peers[0]") && error.contains("fingerprint: bad peer fingerprint"),
        "{error}"
    );
    assert!(
        !error.contains("InvalidArgument"),
        "a config error names the key, not a node error id mid-line: {error}"
    );
}

#[test]
fn an_error_id_is_named_once() {
    let node = member(&[]);
    let add = failure(&node.client(&["peer", "add", "127.0.0.1:9", "xyz", "db", "--prefix", "t"]));
    let remove = failure(&node.client(&["peer", "remove", "xyz"]));
    for error in [add, remove] {
        assert_eq!(error.matches("InvalidArgument").count(), 1, "{error}");
        assert!(error.contains("fingerprint"), "{error}");
    }
    for scope in [
        &[
            "peer",
            "add",
            "127.0.0.1:9",
            &"a".repeat(64),
            "db",
            "--prefix",
            "/x",
        ][..],
        &["sg", "create", "db", "127.0.0.1:9/x", "--prefix", "/x"][..],
    ] {
        let error = failure(&node.client(scope));
        assert!(
            error.starts_with("syncbase: error: InvalidArgument: scope \"/x\": "),
            "{scope:?}: {error}"
        );
    }
    assert!(node.stop());
}

#[test]
fn sg_create_without_a_prefix_names_the_flag() {
    let node = member(&["--peer-listen", "127.0.0.1:0"]);
    let name = format!("{}/x", node.peer_addr());
    let output = node.client(&["sg", "create", "db", &name]);
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("--prefix"), "{error}");
    assert!(node.stop());
}

#[test]
fn a_value_over_the_limit_says_the_limit_and_how_to_split_it() {
    let node = member(&[]);
    let mut put = node.command(&["put", "db", "t", "big", "-"]);
    let mut child = put
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let _ = child.stdin.take().unwrap().write_all(&vec![b'x'; 5 << 20]);
    let error = failure(&child.wait_with_output().unwrap());
    assert!(
        error.contains("4 MiB") && error.contains("split"),
        "{error}"
    );
    assert!(!error.contains("blob"), "blobs are not built: {error}");
    assert!(node.stop());
}

#[test]
fn peer_add_says_what_changed_and_both_verbs_read_scopes_as_sg_create_does() {
    let node = member(&[]);
    let fp = "a".repeat(64);
    let add = |scopes: &[&str]| {
        let mut args = vec!["peer", "add", "127.0.0.1:9", &fp, "photos"];
        args.extend_from_slice(scopes);
        node.client(&args)
    };
    let misread = failure(&add(&["meta", "thumbs/2024/"]));
    assert!(
        misread.contains("--prefix meta --prefix thumbs/2024/"),
        "{misread}"
    );
    let added = stdout(&add(&["--prefix", "meta"]));
    assert!(added.starts_with(&format!("added peer {fp}")), "{added}");
    let again = stdout(&add(&["--prefix", "meta"]));
    assert!(again.starts_with("changed nothing: peer "), "{again}");
    let more = stdout(&add(&["--prefix", "thumbs/2024/"]));
    assert!(
        more.starts_with(&format!(
            "updated peer {fp}: database photos now also shares thumbs/2024/"
        )),
        "{more}"
    );
    assert!(
        stdout(&add(&["meta/old"])).contains("now also shares meta/old"),
        "the old form"
    );
    let listed = node.ok(&["peer", "list"]);
    assert!(
        listed.contains("thumbs/2024/") && listed.contains("meta/old"),
        "{listed}"
    );

    let one = stdout(&node.client(&["peer", "remove", &fp, "photos", "--prefix", "thumbs/2024/"]));
    assert_eq!(
        one,
        format!("removed scope thumbs/2024/ of database photos from peer {fp}\n")
    );
    let listed = node.ok(&["peer", "list"]);
    assert!(
        !listed.contains("thumbs") && listed.contains("meta/old"),
        "{listed}"
    );
    let unknown_scope = failure(&node.client(&["peer", "remove", &fp, "photos", "--prefix", "x"]));
    assert!(
        unknown_scope.contains("NoExist:") && unknown_scope.contains("meta/old"),
        "{unknown_scope}"
    );

    assert!(stdout(&node.client(&["peer", "remove", &fp])).contains("removed peer"));
    let unknown = failure(&node.client(&["peer", "remove", &fp]));
    assert!(unknown.contains("NoExist:"), "{unknown}");
    assert!(node.stop());
}

#[test]
fn invites_say_why_they_admit_no_one_and_who_may_mint_them() {
    let admin = member(&["--peer-listen", "127.0.0.1:0"]);
    let name = format!("{}/photos", admin.peer_addr());
    admin.ok(&["sg", "create", "db", &name, "--prefix", "t"]);
    let invite = admin.ok(&["sg", "invite", &name]);
    let leaf = member(&["--role", "leaf"]);
    let id = leaf.ok(&["id"]);
    assert!(
        id.contains("role leaf\npeer-address none (a leaf: it accepts no connections"),
        "a leaf's id says why it has no peer address: {id}"
    );
    leaf.ok(&["sg", "join", invite.trim()]);
    let late = member(&["--peer-listen", "127.0.0.1:0"]);
    let used = failure(&late.client(&["sg", "join", invite.trim()]));
    assert!(
        used.contains("NoAccess:") && used.contains("used up"),
        "{used}"
    );
    assert!(
        !used.contains("not known here"),
        "told apart from unknown: {used}"
    );

    let refused = failure(&leaf.client(&["sg", "invite", &name]));
    assert!(!refused.contains("no peer listener"), "{refused}");
    assert!(refused.contains("only an admin mints invites"), "{refused}");
    assert!(refused.contains(&admin.fingerprint()), "{refused}");
    assert!(admin.stop() && leaf.stop() && late.stop());
}

#[test]
fn a_publish_the_host_refuses_fails_with_the_hosts_error() {
    let host = member(&["--peer-listen", "127.0.0.1:0"]);
    let other = member(&["--peer-listen", "127.0.0.1:0"]);
    let name = format!("{}/taken", host.peer_addr());
    host.ok(&["sg", "create", "db", &name, "--prefix", "t"]);
    let output = other.client(&[
        "sg",
        "create",
        "db",
        &name,
        "--prefix",
        "t",
        "--host",
        &host.fingerprint(),
    ]);
    let error = failure(&output);
    assert!(
        error.contains("Exist:") && error.contains("answered by the host"),
        "{error}"
    );
    assert!(host.stop() && other.stop());
}

#[test]
fn removing_a_peer_that_a_syncgroup_keeps_says_why_and_fails() {
    let a = member(&["--peer-listen", "127.0.0.1:0"]);
    let b = member(&["--peer-listen", "127.0.0.1:0"]);
    let name = format!("{}/shared", a.peer_addr());
    a.ok(&["sg", "create", "db", &name, "--prefix", "t"]);
    let invite = a.ok(&["sg", "invite", &name]);
    b.ok(&["sg", "join", invite.trim()]);
    let b_fp = b.fingerprint();
    eventually_blocking("A to list B as a peer", Duration::from_secs(20), || {
        a.ok(&["peer", "list"]).contains(&b_fp)
    });
    a.ok(&["peer", "add", &b.peer_addr(), &b_fp, "db", "--prefix", "u"]);
    let error = failure(&a.client(&["peer", "remove", &b_fp]));
    assert!(
        error.contains("BadState:") && error.contains("stays a peer"),
        "{error}"
    );
    assert!(a.ok(&["peer", "list"]).contains(&b_fp), "it stays");
    assert!(a.stop() && b.stop());
}

#[test]
fn the_cli_pointed_at_a_status_page_says_it_is_a_web_server_not_the_app_api() {
    let http = common::free_loopback_addr();
    let node = member(&["--http", &http]);
    let token = node.path().join("client.token");
    let output = Command::new(BIN)
        .args(["status", "--addr", &http, "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    let error = failure(&output);
    assert!(
        error.contains(&format!("{http} does not speak the app API"))
            && error.contains("status page")
            && error.contains("node.addr"),
        "{error}"
    );
    assert!(node.stop());
}
