//! `query`: records from a database the user keeps their logs in:
//! Postgres (with or without pgvector), streamed through a server-side
//! cursor ([`postgres`]), or a Weaviate collection with its vectors, page
//! by page ([`weaviate`]).
//!
//! Credentials come from the environment (`url_env`, `api_key_env`: the
//! variables' names), never from the spec, so no password reaches a key, a
//! manifest or a log. The node key is the query plus a fingerprint of the
//! data, taken when the spec is compiled: for Postgres the result of a
//! `fingerprint` query the user picks (`select max(updated_at), count(*)
//! from logs`), for Weaviate the collection's object count. `flow plan`
//! says whether the logs changed, and the run checks the fingerprint again
//! as it reads (Postgres: in the same snapshot), so new rows never land
//! under the old key. Every record gets an `id` as `load` gives one: the
//! `id_field` column, else the row's hash (Weaviate: the object's id).

pub mod postgres;
pub mod weaviate;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use flow_engine::{Arity, BuildCx, CheckCx, FieldSet, Node, NodeError, PortType, Shape, Stage};

pub struct Query;

/// `kind: query`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Rows of a Postgres query or table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSource>,
    /// Objects of a Weaviate collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weaviate: Option<WeaviateSource>,
    /// Column holding each record's id; without it, a hash of the row.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// Only the first `limit` rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// `postgres: {url_env, query | table (+ columns), fingerprint}`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSource {
    /// The environment variable holding the connection URL
    /// (`postgres://user:password@host:5432/db`): its name, never the URL.
    pub url_env: String,
    /// The rows to read, as SQL; or `table:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// A table (or `schema.table`) to read every row of; or `query:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// With `table:`, record fields from columns (`input: prompt_text`);
    /// default every column under its own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<BTreeMap<String, String>>,
    /// SQL whose result changes when the rows do, e.g. `select
    /// max(updated_at), count(*) from logs`: it is part of the node key.
    pub fingerprint: String,
    /// Rows fetched from the cursor at a time.
    #[serde(default = "default_fetch")]
    pub fetch: u32,
}

/// `weaviate: {url, class, api_key_env, properties, vector_field}`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeaviateSource {
    /// The server, e.g. `http://localhost:8080`.
    pub url: String,
    /// The environment variable holding the API key (sent as a bearer
    /// token); none for a server without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The collection (class) to read.
    pub class: String,
    /// The properties to keep as fields; default every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Vec<String>>,
    /// The field each object's vector goes to.
    #[serde(default = "default_vector_field")]
    pub vector_field: String,
    /// A named vector (Weaviate 1.24+) instead of the object's default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_name: Option<String>,
    /// Objects per request.
    #[serde(default = "default_page")]
    pub page: u32,
}

fn default_vector_field() -> String {
    "embedding".into()
}

fn default_page() -> u32 {
    100
}

/// Why the database cannot be read, for the config field `field` of the
/// source.
#[derive(Debug)]
pub struct Problem {
    pub field: &'static str,
    pub message: String,
    pub hint: String,
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own:
/// compiling a spec is not async, and may happen inside a runtime.
fn blocking<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
            rt.block_on(f)
        })
        .join()
        .expect("the query thread")
    })
}

fn default_id_field() -> String {
    "id".into()
}

fn default_fetch() -> u32 {
    1000
}

impl crate::Face for Query {
    /// Its records are the input: the pipeline view shows its counts.
    const VIEW: Option<&'static crate::view::View> = None;
}

impl Node for Query {
    type Config = QueryConfig;
    const KIND: &'static str = "query";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "records from a Postgres query or table (pgvector columns as arrays), streamed";
    const INPUTS: Arity = Arity::None;
    const SHAPE: Shape = Shape::Source;

    fn check(config: &QueryConfig, cx: &mut CheckCx<'_>) -> PortType {
        let open = PortType::records(FieldSet::Open);
        if config.limit == Some(0) {
            cx.error(
                &cx.field("limit"),
                "`limit: 0` keeps no record",
                Some("set `limit` to the number of rows to read, or remove it".into()),
            );
        }
        let shape = "write `postgres: {url_env: DATABASE_URL, query: ..., fingerprint: ...}` or `weaviate: {url: ..., class: ...}`";
        let mut fields = match (&config.postgres, &config.weaviate) {
            (Some(_), Some(_)) => {
                cx.error_at_key(
                    &cx.field("weaviate"),
                    "`query` reads one source: `postgres` or `weaviate`, not both",
                    Some(shape.into()),
                );
                return open;
            }
            (None, None) => {
                cx.error(&cx.field("kind"), "`query` needs a source: `postgres` or `weaviate`", Some(shape.into()));
                return open;
            }
            (Some(pg), None) => check_postgres(pg, cx),
            (None, Some(w)) => check_weaviate(w, cx),
        };
        let Some(fields) = fields.as_mut() else { return open };
        fields.insert("id".into());
        PortType::records(FieldSet::Known(std::mem::take(fields)))
    }

    fn build(config: &QueryConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        let expect = cx.files.first().map(|f| f.hash);
        let id_field = config.id_field.clone();
        if let Some(w) = &config.weaviate {
            return Ok(Stage::Source(Box::new(weaviate::Objects::new(w.clone(), expect, id_field, config.limit))));
        }
        let pg = config.postgres.as_ref().ok_or_else(|| NodeError::new("`query` has no source"))?;
        let sql = postgres::select(pg).map_err(|(_, message, _)| NodeError::new(message))?;
        let url = postgres::url(&pg.url_env).map_err(|e| NodeError::new(format!("{}; {}", e.message, e.hint)))?;
        Ok(Stage::Source(Box::new(postgres::Rows::new(
            url,
            sql,
            pg.fingerprint.clone(),
            expect,
            id_field,
            config.limit,
            pg.fetch,
        ))))
    }
}

/// The query's columns, with the fingerprint registered for the key.
fn check_postgres(pg: &PostgresSource, cx: &mut CheckCx<'_>) -> Option<BTreeSet<String>> {
    let at = cx.field("postgres");
    if pg.fetch == 0 {
        cx.error(&at.key("fetch"), "`fetch: 0` reads nothing", Some("the default, 1000, suits most tables".into()));
    }
    let sql = match postgres::select(pg) {
        Ok(sql) => sql,
        Err((field, message, hint)) => {
            cx.error_at_key(&at.key(field), message, Some(hint));
            return None;
        }
    };
    let found = postgres::url(&pg.url_env).and_then(|url| postgres::inspect(&url, &sql, &pg.fingerprint));
    match found {
        Ok(found) => {
            cx.external_input(&format!("postgres: {}", pg.fingerprint), found.fingerprint);
            Some(found.columns.into_iter().map(|c| c.name).collect())
        }
        Err(e) => {
            cx.error(&at.key(e.field), e.message, Some(e.hint));
            None
        }
    }
}

/// The collection's properties (and the vector's field), with its object
/// count registered for the key.
fn check_weaviate(w: &WeaviateSource, cx: &mut CheckCx<'_>) -> Option<BTreeSet<String>> {
    let at = cx.field("weaviate");
    let is_name = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !is_name(&w.class) {
        let msg = format!("`{}` is not a Weaviate collection name", w.class);
        cx.error(
            &at.key("class"),
            msg,
            Some("a name starts with a letter and has letters, digits and `_` (e.g. `ExecutionLog`)".into()),
        );
        return None;
    }
    if w.page == 0 || w.page > 10_000 {
        cx.error(&at.key("page"), format!("`page: {}` must be between 1 and 10000", w.page), None);
    }
    match weaviate::inspect(w) {
        Ok(found) => {
            cx.external_input(&format!("weaviate: the object count of {}", w.class), found.fingerprint());
            let mut fields = match &w.properties {
                Some(p) => p.iter().cloned().collect(),
                None => found.properties,
            };
            fields.insert(w.vector_field.clone());
            Some(fields)
        }
        Err(e) => {
            cx.error(&at.key(e.field), e.message, Some(e.hint));
            None
        }
    }
}
