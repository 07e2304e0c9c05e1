//! A local server that speaks the part of Weaviate's REST API that
//! `kind: query` reads, with Weaviate's shapes: `GET /v1/schema/{class}`,
//! `POST /v1/graphql` (`Aggregate { Class { meta { count } } }`) and
//! `GET /v1/objects?class=…&limit=…&after=…&include=vector` (cursor
//! pagination: objects sorted by id, those after the given one). It
//! demands `Authorization: Bearer <key>` when started with a key, and
//! counts the object pages served. Objects can be added while it runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

struct Shared {
    class: String,
    properties: Vec<String>,
    key: Option<String>,
    /// id → (properties, vector).
    objects: Mutex<BTreeMap<String, (Value, Vec<f64>)>>,
    pages: AtomicU64,
}

pub struct Weaviate {
    pub url: String,
    state: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

type Reply = (StatusCode, Json<Value>);

fn error(status: StatusCode, message: &str) -> Reply {
    (status, Json(json!({"error": [{"message": message}]})))
}

fn authorized(s: &Shared, headers: &HeaderMap) -> Result<(), Reply> {
    let Some(key) = &s.key else { return Ok(()) };
    let sent = headers.get("authorization").and_then(|v| v.to_str().ok());
    if sent == Some(format!("Bearer {key}").as_str()) {
        Ok(())
    } else {
        Err(error(StatusCode::UNAUTHORIZED, "anonymous access not enabled, please provide an auth scheme such as OIDC"))
    }
}

async fn schema(State(s): State<Arc<Shared>>, headers: HeaderMap, Path(class): Path<String>) -> Reply {
    if let Err(e) = authorized(&s, &headers) {
        return e;
    }
    if class != s.class {
        return error(StatusCode::NOT_FOUND, &format!("class \"{class}\" not found in schema"));
    }
    let props: Vec<Value> = s.properties.iter().map(|p| json!({"name": p, "dataType": ["text"]})).collect();
    (StatusCode::OK, Json(json!({"class": s.class, "properties": props, "vectorizer": "none"})))
}

async fn graphql(State(s): State<Arc<Shared>>, headers: HeaderMap, Json(body): Json<Value>) -> Reply {
    if let Err(e) = authorized(&s, &headers) {
        return e;
    }
    let q = body["query"].as_str().unwrap_or_default();
    if !q.contains("Aggregate") || !q.contains(&s.class) {
        return (StatusCode::OK, Json(json!({"errors": [{"message": format!("Cannot query field in {q}")}]})));
    }
    let count = s.objects.lock().unwrap().len();
    (StatusCode::OK, Json(json!({"data": {"Aggregate": {s.class.clone(): [{"meta": {"count": count}}]}}})))
}

async fn objects(State(s): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<BTreeMap<String, String>>) -> Reply {
    if let Err(e) = authorized(&s, &headers) {
        return e;
    }
    if q.get("class") != Some(&s.class) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "the cursor api requires a class");
    }
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(25);
    let with_vector = q.get("include").is_some_and(|i| i.split(',').any(|x| x == "vector"));
    s.pages.fetch_add(1, Ordering::Relaxed);
    let all = s.objects.lock().unwrap();
    let after = q.get("after").cloned().unwrap_or_default();
    let page: Vec<Value> = all
        .range::<String, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
        .take(limit)
        .map(|(id, (props, vector))| {
            let mut o = json!({"class": s.class, "id": id, "properties": props, "creationTimeUnix": 1700000000000u64, "lastUpdateTimeUnix": 1700000000000u64});
            if with_vector {
                o["vector"] = json!(vector);
            }
            o
        })
        .collect();
    (StatusCode::OK, Json(json!({"objects": page, "totalResults": page.len()})))
}

impl Weaviate {
    /// A server for collection `class` with these property names.
    pub fn start(class: &str, properties: &[&str], key: Option<&str>) -> Weaviate {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        std_listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", std_listener.local_addr().unwrap());
        let state = Arc::new(Shared {
            class: class.to_string(),
            properties: properties.iter().map(|p| p.to_string()).collect(),
            key: key.map(str::to_string),
            objects: Mutex::default(),
            pages: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/v1/schema/{class}", get(schema))
            .route("/v1/graphql", post(graphql))
            .route("/v1/objects", get(objects))
            .with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let serve = axum::serve(listener, app);
                tokio::select! {
                    r = serve => r.unwrap(),
                    _ = rx => {}
                }
            });
        });
        Weaviate { url, state, stop: Some(tx), thread: Some(thread) }
    }

    /// Adds an object (its id a UUID, as Weaviate's are).
    pub fn add(&self, id: &str, properties: Value, vector: &[f64]) {
        self.state.objects.lock().unwrap().insert(id.to_string(), (properties, vector.to_vec()));
    }

    /// Object pages served so far.
    pub fn pages(&self) -> u64 {
        self.state.pages.load(Ordering::Relaxed)
    }
}

impl Drop for Weaviate {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
