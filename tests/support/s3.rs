//! A real S3-compatible server for tests: moto in server mode (PyPI's
//! `moto[server]`, installed into `target/moto` by `scripts/fetch-moto.sh`,
//! which `.ci/run` runs), on 127.0.0.1 with a bucket made for the test, and
//! its Python client (boto3, installed with it) to look inside the bucket.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "AKIAFLOWTEST0000";
pub const SECRET_KEY: &str = "flow-s3-SECRET-9731-do-not-store";
pub const BUCKET: &str = "flow-test";

pub struct S3 {
    venv: PathBuf,
    pub endpoint: String,
    server: Child,
}

impl S3 {
    /// A running server with an empty bucket, or `None` (with the reason
    /// printed) where `target/moto` is missing outside CI; in CI its
    /// absence fails the test.
    pub fn start() -> Option<S3> {
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/moto");
        if !venv.join("bin/moto_server").is_file() {
            assert!(std::env::var_os("CI").is_none(), "no moto in target/moto: .ci/run runs scripts/fetch-moto.sh");
            eprintln!("skipping: no S3-compatible server in target/moto (run scripts/fetch-moto.sh)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let s3 = S3 { venv, endpoint: format!("http://127.0.0.1:{port}"), server };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match s3.python(&format!("c.create_bucket(Bucket='{BUCKET}')")) {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "moto did not start in 60 s: {e}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(s3)
    }

    /// The environment a `flow` process needs to reach the bucket.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Runs Python with `c`, a boto3 client of the server; its stdout.
    fn python(&self, code: &str) -> Result<String, String> {
        let script = format!(
            "import boto3\nc = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{ACCESS_KEY}', \
             aws_secret_access_key='{SECRET_KEY}', region_name='us-east-1')\n{code}\n",
            self.endpoint
        );
        let out =
            Command::new(self.venv.join("bin/python")).args(["-c", &script]).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Every object in the bucket: its key and its bytes.
    pub fn objects(&self) -> Vec<(String, Vec<u8>)> {
        let out = self
            .python(&format!(
                "import sys, base64\nfor page in c.get_paginator('list_objects_v2').paginate(Bucket='{BUCKET}'):\n    \
                 for o in page.get('Contents', []):\n        \
                 b = c.get_object(Bucket='{BUCKET}', Key=o['Key'])['Body'].read()\n        \
                 print(o['Key'], base64.b64encode(b).decode())"
            ))
            .expect("list the bucket");
        out.lines().filter_map(|l| l.split_once(' ')).map(|(k, b)| (k.to_string(), decode_base64(b))).collect()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
