//! Rows from Postgres: the query's columns and the fingerprint read when
//! the spec is compiled ([`inspect`]), the rows streamed when it runs
//! ([`Rows`]) through a server-side cursor, in one read-only snapshot with
//! a second look at the fingerprint. Each row comes as JSON from
//! `row_to_json` (numbers, booleans, nested JSON and timestamps as
//! Postgres writes them); a pgvector column (`vector`) becomes an array of
//! numbers.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio_postgres::{Client, Config, NoTls};

use flow_engine::cache::{hash_json, ContentHash};
use flow_engine::{Fields, NodeError, Record, SourceStage};

use super::{blocking, PostgresSource, Problem};

/// How long a connection may take before it is an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What compiling the spec learns: the columns, and the fingerprint's hash.
pub struct Inspected {
    pub columns: Vec<Column>,
    pub fingerprint: ContentHash,
}

pub struct Column {
    pub name: String,
    /// The Postgres type's name (`text`, `int8`, `vector`...).
    pub type_name: String,
}

/// The SQL that selects the rows: `query:`, or every row of `table:`
/// (its `columns:` renamed to their fields). An error names its field.
pub fn select(pg: &PostgresSource) -> Result<String, (&'static str, String, String)> {
    let shape = "write `query: select ... from logs`, or `table: logs` (with `columns: {input: prompt}` to rename)";
    match (&pg.query, &pg.table) {
        (Some(_), Some(_)) => Err(("table", "`postgres` takes `query` or `table`, not both".into(), shape.into())),
        (None, None) => Err(("url_env", "`postgres` needs `query` or `table`".into(), shape.into())),
        (Some(_), None) if pg.columns.is_some() => Err((
            "columns",
            "`columns` renames a `table`'s columns".into(),
            "with `query:`, rename in SQL: `select prompt as input`".into(),
        )),
        (Some(q), None) => {
            let q = q.trim().trim_end_matches(';').trim();
            if q.is_empty() {
                return Err(("query", "`query` is empty".into(), shape.into()));
            }
            Ok(q.to_string())
        }
        (None, Some(t)) => {
            let table = t.split('.').map(ident).collect::<Vec<_>>().join(".");
            let cols = match &pg.columns {
                Some(c) if c.is_empty() => {
                    return Err((
                        "columns",
                        "`columns` is empty".into(),
                        "name at least one `field: column`, or remove it".into(),
                    ))
                }
                Some(c) => c
                    .iter()
                    .map(|(field, col)| format!("{} as {}", ident(col), ident(field)))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => "*".into(),
            };
            Ok(format!("select {cols} from {table}"))
        }
    }
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The connection URL from the environment variable `var`.
pub fn url(var: &str) -> Result<String, Problem> {
    let problem = |message: String, hint: &str| Problem { field: "url_env", message, hint: hint.into() };
    if var.contains("://") || var.contains('@') {
        return Err(problem(
            "`url_env` names an environment variable, not the URL itself".into(),
            "write `url_env: DATABASE_URL` and `export DATABASE_URL=postgres://...`: the URL holds a password, which must not be in the spec",
        ));
    }
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Ok(url),
        _ => Err(problem(
            format!("the environment variable `{var}` (the Postgres URL) is not set"),
            &format!("export {var}=postgres://user:password@host:5432/dbname"),
        )),
    }
}

fn config(url: &str) -> Result<Config, Problem> {
    let mut config: Config = url.parse().map_err(|e| Problem {
        field: "url_env",
        message: format!("the Postgres URL is not valid: {e}"),
        hint: "the form is postgres://user:password@host:5432/dbname".into(),
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// Connects, and drives the connection on the current runtime.
async fn connect(url: &str) -> Result<Client, Problem> {
    let config = config(url)?;
    let (client, connection) = config.connect(NoTls).await.map_err(|e| Problem {
        field: "url_env",
        message: format!("cannot connect to Postgres: {}", error_text(&e)),
        hint: "check that the server is up and the URL's host, port, user and password".into(),
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgres connection: {e}");
        }
    });
    Ok(client)
}

/// The server's message where there is one (`relation "logs" does not
/// exist`), with its position in the SQL.
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let at = match db.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(p)) => format!(" (at character {p})"),
                _ => String::new(),
            };
            format!("{}{at}", db.message())
        }
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let said = s.to_string();
                if !text.contains(&said) {
                    text = format!("{text}: {said}");
                }
                source = s.source();
            }
            text
        }
    }
}

/// The columns of `sql` (prepared, not run) and the fingerprint's hash.
pub fn inspect(url: &str, sql: &str, fingerprint: &str) -> Result<Inspected, Problem> {
    blocking(async {
        let client = connect(url).await?;
        let columns = columns(&client, sql).await?;
        let fingerprint = fingerprint_of(&client, fingerprint).await?;
        Ok(Inspected { columns, fingerprint })
    })
}

async fn columns(client: &Client, sql: &str) -> Result<Vec<Column>, Problem> {
    let stmt = client.prepare(sql).await.map_err(|e| Problem {
        field: "query",
        message: format!("Postgres cannot prepare the query: {}", error_text(&e)),
        hint: "try it in psql; `table:` reads a whole table".into(),
    })?;
    Ok(stmt
        .columns()
        .iter()
        .map(|c| Column { name: c.name().to_string(), type_name: c.type_().name().to_string() })
        .collect())
}

async fn fingerprint_of(client: &Client, fingerprint: &str) -> Result<ContentHash, Problem> {
    let sql = format!("select row_to_json(q)::text from ({}) q", fingerprint.trim().trim_end_matches(';'));
    let rows = client.query(sql.as_str(), &[]).await.map_err(|e| Problem {
        field: "fingerprint",
        message: format!("the fingerprint query failed: {}", error_text(&e)),
        hint: "e.g. `fingerprint: select max(updated_at), count(*) from logs`".into(),
    })?;
    let texts: Vec<Option<String>> = rows.iter().map(|r| r.get::<_, Option<String>>(0)).collect();
    Ok(hash_json(&texts))
}

/// The rows, read as the run goes.
pub struct Rows {
    url: String,
    sql: String,
    fingerprint: String,
    /// The fingerprint's hash the node key has.
    expect: Option<ContentHash>,
    id_field: String,
    left: u64,
    fetch: u32,
    state: State,
}

enum State {
    Start,
    Reading { client: Client, vectors: Vec<String> },
    Done,
}

impl Rows {
    pub fn new(
        url: String,
        sql: String,
        fingerprint: String,
        expect: Option<ContentHash>,
        id_field: String,
        limit: Option<u64>,
        fetch: u32,
    ) -> Self {
        Self { url, sql, fingerprint, expect, id_field, left: limit.unwrap_or(u64::MAX), fetch, state: State::Start }
    }

    /// Opens a read-only snapshot, checks the fingerprint in it, and
    /// declares the cursor.
    async fn open(&self) -> Result<(Client, Vec<String>), NodeError> {
        let fail = |p: Problem| NodeError::new(p.message);
        let client = connect(&self.url).await.map_err(fail)?;
        let sql_err = |e: tokio_postgres::Error| NodeError::new(format!("Postgres: {}", error_text(&e)));
        client.batch_execute("begin isolation level repeatable read read only").await.map_err(sql_err)?;
        let now = fingerprint_of(&client, &self.fingerprint).await.map_err(fail)?;
        if self.expect.is_some_and(|e| e != now) {
            return Err(NodeError::new(
                "the rows changed since the spec was compiled (the fingerprint differs); run again".to_string(),
            ));
        }
        let vectors = columns(&client, &self.sql)
            .await
            .map_err(fail)?
            .into_iter()
            .filter(|c| matches!(c.type_name.as_str(), "vector" | "halfvec"))
            .map(|c| c.name)
            .collect();
        let declare =
            format!("declare flow_rows no scroll cursor for select row_to_json(q)::text from ({}) q", self.sql);
        client.batch_execute(&declare).await.map_err(sql_err)?;
        Ok((client, vectors))
    }

    fn record(&self, text: &str, vectors: &[String]) -> Result<Fields, NodeError> {
        let mut fields: Fields = serde_json::from_str(text)
            .map_err(|e| NodeError::new(format!("Postgres sent a row that is not JSON: {e}")))?;
        for name in vectors {
            if let Some(Value::String(s)) = fields.get(name) {
                // pgvector writes `[0.1,0.2]` (and `[1,0]`): JSON numbers, as floats.
                let v: Vec<f64> = serde_json::from_str(s)
                    .map_err(|e| NodeError::new(format!("column `{name}`: not a vector ({e})")))?;
                fields.insert(name.clone(), Value::Array(v.into_iter().map(Value::from).collect()));
            }
        }
        let id = match fields.get(&self.id_field) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => hash_json(&fields).hex()[..16].to_string(),
            Some(other) => other.to_string(),
        };
        fields.insert("id".into(), Value::String(id));
        Ok(fields)
    }
}

impl SourceStage for Rows {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Record>>, NodeError>> {
        Box::pin(async move {
            if matches!(self.state, State::Start) {
                let (client, vectors) = self.open().await?;
                self.state = State::Reading { client, vectors };
            }
            let State::Reading { client, vectors } = &self.state else { return Ok(None) };
            if self.left == 0 {
                self.state = State::Done;
                return Ok(None);
            }
            let n = u64::from(self.fetch).min(self.left);
            let rows = client
                .query(format!("fetch {n} from flow_rows").as_str(), &[])
                .await
                .map_err(|e| NodeError::new(format!("Postgres: {}", error_text(&e))))?;
            if rows.is_empty() {
                let _ = client.batch_execute("close flow_rows; commit").await;
                self.state = State::Done;
                return Ok(None);
            }
            self.left = self.left.saturating_sub(rows.len() as u64);
            let mut batch = Vec::with_capacity(rows.len());
            for row in &rows {
                let text: String = row.get(0);
                batch.push(std::sync::Arc::new(self.record(&text, vectors)?));
            }
            Ok(Some(batch))
        })
    }
}
