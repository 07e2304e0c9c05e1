//! A real Postgres server with pgvector for tests: the binaries from PyPI's
//! `pgserver` wheel, unpacked into `target/pg` by `scripts/fetch-postgres.sh`
//! (`.ci/run` runs it), a fresh cluster in a temp folder with password
//! authentication, listening on 127.0.0.1 only. Postgres refuses to run as
//! root, so as root the server runs as `nobody`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "flow";

pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    pub password: String,
    server: Child,
}

/// The user to run as: `nobody` when the tests run as root.
fn run_as() -> Option<(u32, u32)> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    (String::from_utf8_lossy(&uid.stdout).trim() == "0").then_some((65534, 65534))
}

fn command(bin: &Path, name: &str) -> Command {
    let mut c = Command::new(bin.join(name));
    if let Some((uid, gid)) = run_as() {
        c.uid(uid).gid(gid);
    }
    c
}

impl Postgres {
    /// A running server, or `None` (with the reason printed) where
    /// `target/pg` is missing outside CI; in CI its absence fails the test.
    pub fn start(password: &str) -> Option<Postgres> {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pg/pgserver/pginstall/bin");
        if !bin.join("postgres").is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "no Postgres in target/pg: .ci/run runs scripts/fetch-postgres.sh"
            );
            eprintln!("skipping: no Postgres in target/pg (run scripts/fetch-postgres.sh)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, password).unwrap();
        if let Some((uid, gid)) = run_as() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let init = command(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb runs");
        assert!(init.status.success(), "initdb failed: {}", String::from_utf8_lossy(&init.stderr));
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = command(&bin, "postgres")
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        let pg = Postgres { bin, dir, port, password: password.to_string(), server };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pg.try_sql("select 1").is_ok_and(|o| o.contains('1')) {
            assert!(Instant::now() < deadline, "postgres did not start in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(pg)
    }

    /// `postgres://flow:<password>@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{USER}:{}@127.0.0.1:{}/postgres", self.password, self.port)
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", &self.password)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs SQL with psql; panics on an error.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("psql: {e}"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
