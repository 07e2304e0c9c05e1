//! A local HTTP server playing the user's own app for `provider: http`
//! tests: `POST /answer` takes `{"question": ...}` and answers
//! `{"data": {"answer": ...}, "meta": {"usage": {...}, "cost": ...}}`. It
//! keeps every request it gets (method, headers, body) so a test asserts
//! what `flow` sent server-side, and can answer requests with a set status
//! (a 503 to retry, a 500 not to) by a word of their question, so a test
//! knows which record met which failure whatever order the calls go in.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Value};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    /// `(word, status)`: the next request whose question holds `word` is
    /// answered with `status` (each entry once).
    fail: Mutex<Vec<(String, u16)>>,
}

pub struct AppServer {
    pub addr: SocketAddr,
    state: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AppServer {
    /// Binds 127.0.0.1 on a free port; `fail` as in [`Shared::fail`].
    pub fn start(fail: &[(&str, u16)]) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let state = Arc::new(Shared {
            seen: Mutex::default(),
            fail: Mutex::new(fail.iter().map(|(w, c)| (w.to_string(), *c)).collect()),
        });
        let app = Router::new().route("/{*path}", any(answer)).with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        Self { addr, state, shutdown: Some(tx), thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn answer(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let headers_seen =
        headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect::<Vec<_>>();
    s.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: uri.to_string(),
        headers: headers_seen,
        body: parsed.clone(),
    });
    let q = parsed["question"].as_str().unwrap_or_default();
    let status = {
        let mut f = s.fail.lock().unwrap();
        f.iter().position(|(w, _)| q.contains(w.as_str())).map(|i| f.remove(i).1)
    };
    if let Some(code) = status {
        let code = StatusCode::from_u16(code).unwrap();
        return (code, Json(json!({"error": {"message": format!("injected {code}")}}))).into_response();
    }
    let words = q.split_whitespace().count() as u64;
    Json(json!({
        "data": {"answer": format!("echo: {q}")},
        "meta": {"usage": {"input_tokens": words, "output_tokens": words + 1}, "cost": 0.0125},
    }))
    .into_response()
}
