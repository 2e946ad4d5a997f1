//! The node's HTTP side (`serve --http ADDR`, config `http_listen`): a small live status page
//! at `/` (one self-contained HTML file embedded in the binary, `page.html`, that fetches
//! `/status.json` every second), the [`StatusReport`] itself at `/status.json`, and
//! Prometheus metrics at `/metrics` (`metrics`). Served by axum on the node's tokio runtime.
//! Rule: a loopback address serves anyone on the machine; any other address serves only
//! requests carrying the node's client token (`Authorization: Bearer TOKEN` or
//! `?token=TOKEN`, which the page keeps for its fetches), compared in constant time
//! (`ClientToken::matches`); others get 401 `NoAccess:`. A loopback page answers only
//! requests whose `Host` is loopback (403 otherwise), against DNS rebinding. Calls `node` (and, through
//! `status`, the peer registry and the store's reads) only; it never writes.

pub mod metrics;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::node::Node;
pub use status::StatusReport;

/// The page: HTML, CSS and script in one file, no outside resources.
const PAGE: &str = include_str!("page.html");

/// What the page's responses allow the browser to load: only this file's own script and
/// style, and fetches to this server.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// What a refused request is told.
pub const REFUSED: &str = "NoAccess: this status page listens on a non-loopback address; \
     give the node's client token (the client.token file in its data directory) as \
     ?token=TOKEN or an Authorization: Bearer TOKEN header";

/// What a request to a loopback page naming another host is told.
pub const NOT_LOOPBACK_HOST: &str = "NoAccess: this status page listens on loopback and \
     answers only requests addressed to localhost or a loopback address (the Host header), \
     so a web page cannot reach it by rebinding a name to 127.0.0.1";

#[derive(Clone)]
struct Shared {
    node: Arc<Node>,
    token_required: bool,
}

/// A bound, not yet serving, status page server.
pub struct HttpServer {
    listener: TcpListener,
    shared: Shared,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks one) for `node`'s page. A non-loopback address requires
    /// the client token. Fails if the address cannot be bound.
    pub async fn bind(addr: SocketAddr, node: Arc<Node>) -> anyhow::Result<HttpServer> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the status page address {addr}"))?;
        let bound = listener.local_addr()?;
        Ok(HttpServer {
            listener,
            shared: Shared {
                node,
                token_required: !bound.ip().is_loopback(),
            },
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Whether requests must carry the client token (the address is not loopback).
    pub fn token_required(&self) -> bool {
        self.shared.token_required
    }

    /// Serves until `shutdown` resolves. Fails only if accepting fails for good.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(
            addr = %self.local_addr(),
            token_required = self.shared.token_required,
            "serving the status page and /metrics"
        );
        axum::serve(self.listener, router(self.shared))
            .with_graceful_shutdown(shutdown)
            .await
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status.json", get(status_json))
        .route("/metrics", get(metrics_text))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ))
        .with_state(shared)
}

#[derive(Deserialize)]
struct TokenParam {
    token: Option<String>,
}

/// Lets a request through if the address is loopback or it carries the client token.
async fn require_token(
    State(shared): State<Shared>,
    Query(param): Query<TokenParam>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if !shared.token_required {
        if !loopback_host(&headers) {
            return (StatusCode::FORBIDDEN, NOT_LOOPBACK_HOST).into_response();
        }
        return next.run(request).await;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match bearer.or(param.token.as_deref()) {
        Some(offered) if shared.node.token().matches(offered.trim()) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            REFUSED,
        )
            .into_response(),
    }
}

/// Whether the request's `Host` names this machine's loopback (`localhost`, `127.x.x.x`,
/// `[::1]`, with or without a port), parsed by `http`'s `Authority`. A page served without
/// a token answers only such requests: a site that rebinds its own name to 127.0.0.1 sends
/// its name as the host, and is refused.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(authority) = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<Authority>().ok())
    else {
        return false;
    };
    let host = authority.host();
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn page() -> Response {
    let mut response = Html(PAGE).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `answer` applied to the report, or 500 with the store's error (its id prefix first).
fn with_report(node: &Node, answer: impl FnOnce(StatusReport) -> Response) -> Response {
    match StatusReport::gather(node) {
        Ok(report) => answer(report),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn status_json(State(shared): State<Shared>) -> Response {
    with_report(&shared.node, |report| {
        ([(header::CACHE_CONTROL, "no-store")], axum::Json(report)).into_response()
    })
}

async fn metrics_text(State(shared): State<Shared>) -> Response {
    with_report(&shared.node, |report| {
        (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            metrics::render(&report),
        )
            .into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_loopback_host_headers_pass_a_page_served_without_a_token() {
        for ok in [
            "localhost",
            "LOCALHOST:7780",
            "127.0.0.1:7780",
            "127.1.2.3",
            "[::1]:7780",
        ] {
            assert!(loopback_host(&host(ok)), "{ok}");
        }
        for refused in [
            "evil.example:7780",
            "10.0.0.1:7780",
            "[::2]",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(&host(refused)), "{refused}");
        }
        assert!(!loopback_host(&HeaderMap::new()), "no Host header");
    }
}
