//! The status page (`syncbase::http`) as a person sees it: node A's page open in headless
//! Debian Chromium (driven through chromedriver by `fantoccini`) shows a write made on node B
//! without a reload; `/metrics` parses as the Prometheus text format and its counters move
//! after a sync; a non-loopback address refuses requests without the client token and
//! serves them with it. Chromium and chromedriver are installed by `scripts/install-chromium`
//! when missing (root and Debian's package registry needed).

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use fantoccini::{Client, ClientBuilder};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use syncbase::embedded::EmbeddedServer;
use syncbase::http::HttpServer;
use syncbase::node::Node;
use syncbase::rpc::transport::MemoryNetwork;
use syncbase::syncgroup::access::Level;

use common::members::{create_syncgroup, join_by_invite};
use common::nodes::start;
use common::on_local;
use common::rows::{read, write};

const WAIT: Duration = Duration::from_secs(20);
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Two nodes on a memory network: A hosts syncgroup `a:1/sg` sharing table `t`, B joined it
/// read-write.
async fn two_members(network: &MemoryNetwork) -> (EmbeddedServer, EmbeddedServer) {
    let a = start(network, "a:1").await;
    let b = start(network, "b:1").await;
    let name = create_syncgroup(&a, "sg", "t").await;
    join_by_invite(&a, &b, &name, Level::ReadWrite).await;
    (a, b)
}

/// Serves `node`'s page on `addr` in this runtime until the test ends.
async fn serve_page(addr: &str, node: &Arc<Node>) -> HttpServer {
    HttpServer::bind(addr.parse().unwrap(), node.clone())
        .await
        .expect("the page binds")
}

fn spawn(server: HttpServer) -> SocketAddr {
    let addr = server.local_addr();
    tokio::spawn(server.serve(std::future::pending()));
    addr
}

/// GET `url` with an optional bearer token: (status, body).
async fn get(url: &str, bearer: Option<&str>) -> (u16, String) {
    get_with(
        url,
        bearer.map(|token| ("authorization", format!("Bearer {token}"))),
    )
    .await
}

/// GET `url` with one more header: (status, body).
async fn get_with(url: &str, header: Option<(&str, String)>) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, Empty<Bytes>>(HttpConnector::new());
    let mut request = axum::http::Request::get(url);
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .expect("the request is answered");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of the sample `name{labels}` whose labels include `label`, from Prometheus
/// text; None if there is none. Checks every line is a comment or `name[{...}] value`.
fn sample(text: &str, name: &str, label: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let value: f64 = value.parse().expect("a sample's value is a number");
        let metric = series.split('{').next().unwrap();
        assert!(
            metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name {metric:?}"
        );
        if metric == name && series.contains(label) {
            found = Some(value);
        }
    }
    found
}

#[test]
fn metrics_export_per_peer_and_per_syncgroup_counters_that_move_after_a_sync() {
    on_local(async {
        let network = MemoryNetwork::new();
        let (a, b) = two_members(&network).await;
        let page = spawn(serve_page("127.0.0.1:0", a.node()).await);
        let url = format!("http://{page}/metrics");
        let b_label = format!("peer=\"{}\"", b.node().identity().fingerprint());
        let (status, before) = get(&url, None).await;
        assert_eq!(status, 200, "{before}");
        for help in [
            "# HELP syncbase_peer_records_received Records received from the peer",
            "# TYPE syncbase_peer_records_received counter",
            "# HELP syncbase_syncgroup_members Members of the syncgroup.",
            "# TYPE syncbase_peer_pending_in_records gauge",
        ] {
            assert!(before.contains(help), "{help:?} missing from\n{before}");
        }
        let sg_label = "syncgroup=\"a:1/sg\"";
        assert_eq!(
            sample(&before, "syncbase_syncgroup_members", sg_label),
            Some(2.0)
        );
        let received = |text: &str| {
            sample(text, "syncbase_peer_records_received_total", &b_label).unwrap_or(0.0)
        };
        let start = received(&before);

        for i in 0..3 {
            write(&b, &format!("k{i}"), Some("v")).await;
        }
        let deadline = Instant::now() + WAIT;
        let after = loop {
            let (_, text) = get(&url, None).await;
            if received(&text) >= start + 3.0 {
                break text;
            }
            assert!(
                Instant::now() < deadline,
                "the counter did not move:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(read(&a, "k2").as_deref(), Some("v"));
        assert!(sample(&after, "syncbase_peer_bytes_received_total", &b_label).unwrap() > 0.0);
        assert!(sample(&after, "syncbase_peer_rounds_total", &b_label).unwrap() >= 1.0);
        assert!(
            sample(
                &after,
                "syncbase_syncgroup_records_received_total",
                sg_label
            )
            .unwrap()
                >= 3.0,
            "the syncgroup sums its members' counters:\n{after}"
        );
    });
}

#[test]
fn a_non_loopback_address_serves_only_requests_with_the_client_token() {
    on_local(async {
        let network = MemoryNetwork::new();
        let a = start(&network, "a:1").await;
        // The wildcard address is not loopback: the rule follows the bound address, so even
        // a request arriving over loopback must carry the token.
        let server = serve_page("0.0.0.0:0", a.node()).await;
        assert!(server.token_required());
        let port = spawn(server).port();
        let base = format!("http://127.0.0.1:{port}");
        let token = a.token().to_owned();
        for path in ["/", "/status.json", "/metrics"] {
            let (status, body) = get(&format!("{base}{path}"), None).await;
            assert_eq!(status, 401, "{path} without a token");
            assert!(body.starts_with("NoAccess:"), "{body}");
            let (status, _) = get(&format!("{base}{path}?token=wrong"), None).await;
            assert_eq!(status, 401, "{path} with a wrong token");
            let (status, _) = get(&format!("{base}{path}"), Some("x")).await;
            assert_eq!(status, 401, "{path} with a wrong bearer token");
            let (status, _) = get(&format!("{base}{path}?token={token}"), None).await;
            assert_eq!(status, 200, "{path} with ?token=");
            let (status, _) = get(&format!("{base}{path}"), Some(&token)).await;
            assert_eq!(status, 200, "{path} with a bearer token");
        }
        let loopback = spawn(serve_page("127.0.0.1:0", a.node()).await);
        let (status, body) = get(&format!("http://{loopback}/status.json"), None).await;
        assert_eq!(status, 200, "loopback serves anyone on the machine: {body}");
        let rebound = format!("evil.example:{}", loopback.port());
        let (status, body) = get_with(
            &format!("http://{loopback}/status.json"),
            Some(("host", rebound)),
        )
        .await;
        assert_eq!(
            status, 403,
            "a loopback page refuses other host names: {body}"
        );
        let report: serde_json::Value =
            serde_json::from_str(&get(&format!("http://{loopback}/status.json"), None).await.1)
                .unwrap();
        assert_eq!(
            report["node"]["fingerprint"],
            a.node().identity().fingerprint().to_string()
        );
        assert_eq!(report["transfers"]["supported"], false);
    });
}

#[test]
fn serve_with_http_serves_the_page_and_metrics() {
    let addr = common::free_loopback_addr();
    // The page binds before node.addr is written, so it answers once `start` returns.
    let _node = common::process::Served::start_in_temp_dir(&["--memory", "--http", &addr]);
    on_local(async {
        let (status, page) = get(&format!("http://{addr}/"), None).await;
        assert_eq!(status, 200);
        assert!(page.contains("<title>syncbase status</title>"), "{page}");
        let (status, metrics) = get(&format!("http://{addr}/metrics"), None).await;
        assert_eq!(status, 200);
        assert!(
            metrics.contains("# TYPE syncbase_store_used_bytes gauge"),
            "{metrics}"
        );
    });
}

#[test]
fn the_page_report_names_its_fields_as_the_cli_json_does() {
    let addr = common::free_loopback_addr();
    let node = common::process::Served::start_in_temp_dir(&[
        "--memory",
        "--http",
        &addr,
        "--peer-listen",
        "127.0.0.1:0",
        "--name",
        "alice",
    ]);
    let peer = "ab".repeat(32);
    node.ok(&[
        "peer",
        "add",
        "127.0.0.1:9",
        &peer,
        "db",
        "--prefix",
        "t/p",
        "--name",
        "far",
    ]);
    let name = format!("{}/sg", node.peer_addr());
    node.ok(&["sg", "create", "db", &name, "--prefix", "t"]);
    let cli = node.json(&["status", "--json"]);
    let shown = node.json(&["sg", "show", &name, "--json"]);
    let mut body = String::new();
    on_local(async { body = get(&format!("http://{addr}/status.json"), None).await.1 });
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["node"]["name"], "alice", "{page}");
    let (cli_peer, page_peer) = (&cli["peers"][0], &page["peers"][0]);
    for (field, value) in cli_peer.as_object().expect("a peer object") {
        if ["connected", "last_error", "pending_in", "pending_out"].contains(&field.as_str()) {
            continue; // may move between the two reads
        }
        assert_eq!(
            &page_peer[field], value,
            "peer field {field:?}: {page_peer}"
        );
    }
    let (cli_member, page_member) = (&shown["members"][0], &page["syncgroups"][0]["members"][0]);
    for field in ["fingerprint", "name", "address", "server"] {
        assert_eq!(
            page_member[field], cli_member[field],
            "member field {field:?}"
        );
    }
    assert_eq!(page["syncgroups"][0]["status"], shown["status"]);
    assert_eq!(page["syncgroups"][0]["removed"], shown["removed"]);
}

/// Installs Chromium and chromedriver with the project's script when either is missing.
fn ensure_chromium() {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-chromium");
    let status = Command::new("bash").arg(&script).status().unwrap();
    assert!(status.success(), "{} failed: {status}", script.display());
}

/// A chromedriver process on a free loopback port, killed on drop.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    fn start() -> Chromedriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Chromedriver { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    /// A headless Chromium session with the flags this machine needs (no network but
    /// loopback, so nothing in the background; a fresh profile).
    async fn browser(&self, profile: &Path) -> Client {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session starts")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the first element matching `css`, once there is one. Read in one script
/// call: the page rebuilds its tables every second, so an element found in one call can be
/// gone by the next.
async fn text_of(browser: &Client, css: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = browser
            .execute(
                "const found = document.querySelector(arguments[0]); \
                 return found ? found.textContent : null;",
                vec![json!(css)],
            )
            .await
            .unwrap();
        if let serde_json::Value::String(text) = text {
            return text;
        }
        assert!(Instant::now() < deadline, "no {css} on the page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of the cell `field` in the peers table row of `peer`.
async fn peer_cell(browser: &Client, peer: &str, field: &str) -> String {
    let css = format!("#peers tr[data-peer=\"{peer}\"] td[data-field=\"{field}\"]");
    text_of(browser, &css).await
}

#[test]
fn a_write_on_another_node_shows_on_the_page_without_a_reload() {
    ensure_chromium();
    let driver = Chromedriver::start();
    let profile = tempfile::tempdir().unwrap();
    on_local(async {
        let network = MemoryNetwork::new();
        let (a, b) = two_members(&network).await;
        write(&b, "before", Some("v")).await;
        common::eventually("A holds B's first write", WAIT, || {
            read(&a, "before").is_some()
        })
        .await;
        let page = spawn(serve_page("127.0.0.1:0", a.node()).await);
        let browser = driver.browser(profile.path()).await;
        browser.goto(&format!("http://{page}/")).await.unwrap();
        let b_fingerprint = b.node().identity().fingerprint().to_string();
        let shown = peer_cell(&browser, &b_fingerprint, "records_received").await;
        let before: u64 = shown.parse().expect("a count");
        assert!(before >= 1, "B's first write already counted: {shown}");
        let identity = text_of(&browser, "[data-field=\"fingerprint\"]").await;
        assert_eq!(identity, a.node().identity().fingerprint().to_string());
        let sg = text_of(&browser, "#syncgroups tr[data-syncgroup=\"a:1/sg\"]").await;
        assert!(sg.contains("2 members") && sg.contains("admin"), "{sg}");
        // A mark a reload would wipe.
        browser
            .execute("window.notReloaded = true; return true;", vec![])
            .await
            .unwrap();

        for i in 0..5 {
            write(&b, &format!("k{i}"), Some("v")).await;
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let shown = peer_cell(&browser, &b_fingerprint, "records_received").await;
            if shown.parse::<u64>().unwrap() >= before + 5 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the page still shows {shown} records from B (was {before})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let kept = browser
            .execute("return window.notReloaded === true;", vec![])
            .await
            .unwrap();
        assert_eq!(kept, json!(true), "the page updated without a reload");
        if std::env::var_os("SYNCBASE_SCREENSHOT").is_some() {
            let png = browser.screenshot().await.unwrap();
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-page.png");
            std::fs::write(&path, png).unwrap();
        }
        browser.close().await.unwrap();
    });
}
