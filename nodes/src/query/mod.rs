//! `query`: records from a database the user keeps their logs in:
//! Postgres (with or without pgvector), streamed through a server-side
//! cursor ([`postgres`]).
//!
//! The connection URL comes from the environment (`url_env`, the
//! variable's name), never from the spec, so no password reaches a key, a
//! manifest or a log. The node key is the query plus the result of a
//! `fingerprint` query the user picks (`select max(updated_at), count(*)
//! from logs`), run when the spec is compiled: `flow plan` says whether the
//! logs changed, and the run reads them in the same snapshot as a second
//! look at the fingerprint, so new rows never land under the old key.
//! Every record gets an `id` as `load` gives one: the `id_field` column, or
//! a hash of the row.

pub mod postgres;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use flow_engine::{Arity, BuildCx, CheckCx, FieldSet, Node, NodeError, PortType, Shape, Stage};

pub struct Query;

/// `kind: query`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Rows of a Postgres query or table.
    pub postgres: PostgresSource,
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
        let pg = &config.postgres;
        let at = cx.field("postgres");
        if config.limit == Some(0) {
            cx.error(&cx.field("limit"), "`limit: 0` keeps no record", Some("set `limit` to the number of rows to read, or remove it".into()));
        }
        if pg.fetch == 0 {
            cx.error(&at.key("fetch"), "`fetch: 0` reads nothing", Some("the default, 1000, suits most tables".into()));
        }
        let sql = match postgres::select(pg) {
            Ok(sql) => sql,
            Err((field, message, hint)) => {
                cx.error_at_key(&at.key(field), message, Some(hint));
                return open;
            }
        };
        let url = match postgres::url(&pg.url_env) {
            Ok(url) => url,
            Err(e) => {
                cx.error(&at.key("url_env"), e.message, Some(e.hint));
                return open;
            }
        };
        match postgres::inspect(&url, &sql, &pg.fingerprint) {
            Ok(found) => {
                cx.external_input(&format!("postgres: {}", pg.fingerprint), found.fingerprint);
                let mut fields: std::collections::BTreeSet<String> = found.columns.into_iter().map(|c| c.name).collect();
                fields.insert("id".into());
                PortType::records(FieldSet::Known(fields))
            }
            Err(e) => {
                cx.error(&at.key(e.field), e.message, Some(e.hint));
                open
            }
        }
    }

    fn build(config: &QueryConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        let pg = &config.postgres;
        let sql = postgres::select(pg).map_err(|(_, message, _)| NodeError::new(message))?;
        let url = postgres::url(&pg.url_env).map_err(|e| NodeError::new(format!("{}; {}", e.message, e.hint)))?;
        let expect = cx.files.first().map(|f| f.hash);
        Ok(Stage::Source(Box::new(postgres::Rows::new(
            url,
            sql,
            pg.fingerprint.clone(),
            expect,
            config.id_field.clone(),
            config.limit,
            pg.fetch,
        ))))
    }
}
