//! `flow view --serve`: a local web server for the workspace's reports, so
//! they can follow a run while it goes, which a file cannot (it fetches
//! nothing). It serves the index of runs, each run's report and the
//! comparison of two runs, each the same page as the file with the live
//! strip added (`report/live.js`), and `/events`: the event logs of the runs
//! going ([`tail`]) as Server-Sent Events. A page whose run ends draws
//! itself again from the final report (`/runs/<id>/data.json`).
//!
//! It listens on 127.0.0.1 unless `--host` names another address, and
//! answers only requests made to that name (a page elsewhere cannot reach
//! it by renaming itself, "DNS rebinding"). Its routes are fixed and a run
//! is one of the workspace's by its exact id: nothing is served from a
//! path a request names, so nothing outside the workspace's reports can
//! be reached. Pages keep the reports' CSP, with `connect-src 'self'`.

pub mod tail;

use crate::out::{errln, outln};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;

use flow_engine::cache::{RunStatus, Store};
use flow_engine::diag::Diagnostic;

use crate::report::{self, index, REPORT_HTML};
use crate::Failure;
use tail::Tail;

/// What the pages may connect to: their own server.
const CONNECT: &str = "'self'";

/// The address to listen on: 127.0.0.1, unless `host` (`--host`) names
/// another; `localhost` is 127.0.0.1. A name other than that is refused,
/// so what is exposed is always written out; an address other than a
/// loopback one is for the user to have typed, and [`serve`] warns.
pub fn address(host: Option<&str>, port: u16) -> Result<SocketAddr, Diagnostic> {
    let ip = match host {
        None | Some("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(h) => h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().map_err(|_| {
            Diagnostic::new(format!("--host `{h}` is not an IP address"))
                .hint("give the address to listen on, e.g. --host 127.0.0.1 (the default) or --host 0.0.0.0 for every interface")
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Serves `store`'s reports on `addr` until Ctrl-C; `open`: opens the
/// index in the browser too.
pub fn serve(store: Store, addr: SocketAddr, open: bool) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::Usage(
                Diagnostic::new(format!("cannot listen on {addr}: {e}"))
                    .hint("pick another port with --port, or --port 0 for a free one")
                    .into(),
            )
        })?;
        let bound = listener.local_addr().map_err(anyhow::Error::from)?;
        if !bound.ip().is_loopback() {
            errln!(
                "warning: serving on {bound}: any machine that can reach this one can read these reports (model outputs, prompts, params)"
            );
        }
        let app = Arc::new(App { tail: Tail::start(store.clone()), store, allowed: allowed_hosts(bound) });
        let router = Router::new()
            .route("/", get(index_page))
            .route("/index.html", get(index_page))
            .route("/index.json", get(index_json))
            .route("/events", get(events))
            .route("/runs/{id}/report.html", get(run_page))
            .route("/runs/{id}/data.json", get(run_data))
            .route("/compare/{a}/{b}", get(compare_page))
            .fallback(|| async { not_found("no such page") })
            .layer(middleware::from_fn_with_state(app.clone(), guard))
            .with_state(app);
        let url = match bound {
            SocketAddr::V6(a) => format!("http://[{}]:{}/", a.ip(), a.port()),
            SocketAddr::V4(a) => format!("http://{a}/"),
        };
        outln!("serving {url}");
        errln!("(Ctrl-C stops it)");
        if open {
            report::open_in_browser(std::path::Path::new(&url));
        }
        // Pages keep their event streams open: Ctrl-C ends them with the server.
        tokio::select! {
            served = axum::serve(listener, router) => served.map_err(|e| Failure::Other(e.into())),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    runtime.shutdown_timeout(Duration::from_millis(200));
    Ok(())
}

struct App {
    store: Store,
    tail: Arc<Tail>,
    /// The `Host` values requests may carry; empty: any (an address the
    /// user chose to expose).
    allowed: Vec<String>,
}

/// The names a page on this machine reaches a loopback server by.
fn allowed_hosts(bound: SocketAddr) -> Vec<String> {
    if !bound.ip().is_loopback() {
        return Vec::new();
    }
    let port = bound.port();
    vec![format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")]
}

/// Refuses a request to another name than the server's, and marks every
/// answer as not to be cached or sniffed.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !app.allowed.is_empty() && !app.allowed.iter().any(|a| a.eq_ignore_ascii_case(host)) {
        return (StatusCode::MISDIRECTED_REQUEST, "this server answers requests to its own address only\n")
            .into_response();
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

/// Why a page is not served.
enum Refused {
    NotFound(String),
    Failed(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Refused::NotFound(t) => (StatusCode::NOT_FOUND, t),
            Refused::Failed(t) => (StatusCode::INTERNAL_SERVER_ERROR, t),
        };
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{text}\n")).into_response()
    }
}

fn not_found(what: &str) -> Response {
    Refused::NotFound(what.to_string()).into_response()
}

fn html(page: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

fn json_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// Runs `f` (the store's reading) off the server's threads, and answers
/// with what it made.
async fn answer<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refused> + Send + 'static,
    ok: impl FnOnce(T) -> Response,
) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => ok(v),
        Ok(Err(r)) => r.into_response(),
        Err(e) => Refused::Failed(e.to_string()).into_response(),
    }
}

fn failed(e: &anyhow::Error) -> Refused {
    Refused::Failed(crate::out::chain(e))
}

async fn index_page(State(app): State<Arc<App>>) -> Response {
    answer(move || index::render(&app.store, CONNECT).map_err(|e| failed(&e)), html).await
}

async fn index_json(State(app): State<Arc<App>>) -> Response {
    answer(move || index::collect(&app.store, true).map_err(|e| failed(&e)), |d| json_text(d.to_string())).await
}

/// `id` when it is exactly one of the workspace's runs: the only way a
/// request's path reaches a folder.
fn known_run(store: &Store, id: &str) -> Result<String, Refused> {
    let ids = store.run_ids().map_err(|e| Refused::Failed(e.to_string()))?;
    ids.into_iter().find(|r| r == id).ok_or_else(|| Refused::NotFound("no such run".into()))
}

/// A run's report data: its report's, or for a run without one yet (still
/// going), what its manifest says so far; and its spec.
fn run_data_of(store: &Store, id: &str) -> Result<(String, String), Refused> {
    let id = known_run(store, id)?;
    let path = store.run_dir(&id).join(REPORT_HTML);
    let m = store.run_manifest(&id).map_err(|e| Refused::Failed(e.to_string()))?;
    if let Ok(page) = std::fs::read_to_string(&path) {
        if let Some(data) = report::embedded_data(&page) {
            return Ok((m.spec, data.to_string()));
        }
    }
    if m.status != RunStatus::Running && path.is_file() {
        return Err(Refused::Failed(format!("the report of run `{id}` is unreadable")));
    }
    let data = report::data_of(store, &m);
    Ok((m.spec, data))
}

async fn run_page(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    answer(
        move || {
            let (spec, data) = run_data_of(&app.store, &id)?;
            Ok(report::served_page(&spec, &id, &data, CONNECT))
        },
        html,
    )
    .await
}

async fn run_data(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    answer(move || run_data_of(&app.store, &id).map(|(_, data)| data), json_text).await
}

async fn compare_page(State(app): State<Arc<App>>, Path((a, b)): Path<(String, String)>) -> Response {
    answer(
        move || {
            let (a, b) = (known_run(&app.store, &a)?, known_run(&app.store, &b)?);
            match crate::compare::load(&app.store, &a, &b, None) {
                Ok(c) => Ok(report::comparison::render(&app.store, &c, "/runs/", CONNECT)),
                Err(Failure::Usage(d)) => Err(Refused::NotFound(d.to_string())),
                Err(Failure::Other(e)) => Err(Refused::NotFound(crate::out::chain(&e))),
            }
        },
        html,
    )
    .await
}

#[derive(Deserialize)]
struct EventsQuery {
    run: Option<String>,
}

/// The event logs as Server-Sent Events: `reset`, then each followed run's
/// log so far, then its lines as they are written. A page that falls
/// behind gets `lagged` and the end of the stream; its browser reconnects.
async fn events(
    State(app): State<Arc<App>>,
    Query(q): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (rx, backlog) = app.tail.subscribe(q.run.as_deref());
    let lines = tokio::task::spawn_blocking(move || backlog.read()).await.unwrap_or_default();
    let head = std::iter::once(Event::default().event("reset").retry(Duration::from_millis(500)).data(""))
        .chain(lines.into_iter().map(|l| Event::default().data(l)));
    let live = stream::unfold(Some((rx, q.run)), |st| async move {
        let (mut rx, run) = st?;
        loop {
            match rx.recv().await {
                Ok(line) if run.as_ref().is_none_or(|r| *r == line.run) => {
                    return Some((Event::default().data(&line.text), Some((rx, run))));
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    return Some((Event::default().event("lagged").data(""), None));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream::iter(head).chain(live).map(Ok)).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_listens_on_loopback_unless_told_otherwise() {
        assert_eq!(address(None, 0).unwrap(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(address(Some("localhost"), 8080).unwrap(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(address(Some("::1"), 1).unwrap(), "[::1]:1".parse().unwrap());
        assert_eq!(address(Some("[::1]"), 1).unwrap(), "[::1]:1".parse().unwrap());
        // Another address only when named: then it is what was typed.
        assert_eq!(address(Some("0.0.0.0"), 7).unwrap(), "0.0.0.0:7".parse().unwrap());
        assert_eq!(address(Some("192.168.1.5"), 7).unwrap(), "192.168.1.5:7".parse().unwrap());
        for bad in ["example.com", "", "127.0.0.1:80", "0"] {
            let e = address(Some(bad), 7).unwrap_err().to_string();
            assert!(e.contains("is not an IP address") && e.contains("--host 127.0.0.1"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_loopback_server_answers_its_own_names_only() {
        let allowed = allowed_hosts("127.0.0.1:4000".parse().unwrap());
        assert_eq!(allowed, ["127.0.0.1:4000", "localhost:4000", "[::1]:4000"]);
        assert!(allowed_hosts("0.0.0.0:4000".parse().unwrap()).is_empty(), "an exposed server is reached by any name");
    }
}
