//! `haul`: the command-line client of the haul download service.

mod api;
mod backoff;
mod batch;
mod batch_bars;
mod batch_report;
#[cfg(test)]
mod batch_tests;
mod download;
mod error;
mod events;
mod follow;
mod get;
mod interrupt;
mod jobs;
mod progress;
mod request;
mod state;
mod ui;
mod verify;
mod views;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::api::{Api, OnRetry};
use crate::error::{CliError, Exit};
use crate::events::Follow;
use crate::follow::GetRequest;
use crate::request::Priority;
use crate::ui::{Mode, Ui};

/// The largest file id the API accepts (2^53 - 1).
const MAX_FILE_ID: u64 = (1 << 53) - 1;

/// What a command prints on success: `json` with `--json`, else `text`.
#[derive(Debug, Clone)]
pub struct Output {
    pub json: serde_json::Value,
    pub text: String,
}

#[derive(Debug, Parser)]
#[command(
    name = "haul",
    version,
    about = "Download files through haul: start a job, follow its progress, fetch and verify the file",
    after_help = "Exit codes: 0 ok, 1 refused by the server, 2 usage, 3 job failed, 4 not found, \
                  5 cancelled or expired, 6 network or server error, 7 verification failed, \
                  8 local file error, 9 a batch with some files saved and some failed, \
                  130 interrupted."
)]
struct Cli {
    /// Base URL of the haul API.
    #[arg(
        long,
        env = "HAUL_API_URL",
        default_value = "http://127.0.0.1:9000",
        global = true
    )]
    api_url: String,

    /// Bearer token sent to the API (never to the storage).
    #[arg(long, env = "HAUL_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,

    /// Print one JSON document on stdout (the result, or {"error": …}) and no progress.
    #[arg(long, global = true)]
    json: bool,

    /// Retries after a network error, 5xx or 429, per request (exponential backoff with jitter).
    #[arg(long, env = "HAUL_RETRIES", default_value_t = 8, global = true)]
    retries: u32,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a download (or continue one), wait for it, save and verify the file.
    Get(GetArgs),
    /// Show a job.
    Status {
        /// The job's id (from `haul get` or the API).
        job_id: String,
    },
    /// Cancel a queued or running job.
    Cancel {
        /// The job's id.
        job_id: String,
    },
    /// Retry a failed job: the same job, resuming what it stored where the origin allows.
    Retry {
        /// The job's id.
        job_id: String,
    },
    /// List your jobs (only where the server keeps a history, i.e. with an authorizer).
    List {
        /// At most this many jobs.
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after the `more:` cursor of an earlier page.
        #[arg(long)]
        cursor: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["file_ids", "job"])))]
struct GetArgs {
    /// The file to download; several (up to 100, distinct) start one batch of them, saved
    /// under their own names (`-o` is then a directory). Running the same command again
    /// continues the same job.
    #[arg(
        value_name = "FILE_ID",
        value_parser = clap::value_parser!(u64).range(1..=MAX_FILE_ID)
    )]
    file_ids: Vec<u64>,

    /// Pick up an existing job (or batch) instead of starting one.
    #[arg(long, value_name = "JOB_ID", conflicts_with = "file_ids")]
    job: Option<String>,

    /// Ask for the files as one ZIP archive (`bundle: "zip"`), and download only that.
    #[arg(long, conflicts_with = "job")]
    zip: bool,

    /// The job's priority at the server (sent only when given).
    #[arg(long, value_enum, conflicts_with = "job")]
    priority: Option<Priority>,

    /// Where to save: a file, or a directory for the server's file name (default: the
    /// server's file name in the current directory).
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,

    /// Start a new job even if an unfinished `haul get` of this file left one.
    #[arg(long, conflicts_with = "job")]
    new_job: bool,

    /// How to follow the job: over its event stream where the server offers one, else (or
    /// when the stream breaks) by polling; `stream` fails instead of polling; `poll` never
    /// opens the stream.
    #[arg(long, value_enum, env = "HAUL_FOLLOW", default_value_t = Follow::Auto)]
    follow: Follow,
}

async fn run(cli: &Cli, ui: Arc<Ui>) -> Result<Output, CliError> {
    // The client reports its retries; the UI decides how to show them.
    let notes = ui.clone();
    let on_retry: OnRetry = Arc::new(move |message: &str| notes.note(message));
    let api = Api::new(&cli.api_url, cli.token.clone(), cli.retries, on_retry)?;
    match &cli.command {
        Command::Get(args) => {
            let request = GetRequest {
                file_ids: &args.file_ids,
                job: args.job.as_deref(),
                output: args.output.as_deref(),
                new_job: args.new_job,
                follow: args.follow,
                zip: args.zip,
                priority: args.priority,
            };
            get::get(&api, &ui, request).await
        }
        Command::Status { job_id } => jobs::status(&api, job_id).await,
        Command::Cancel { job_id } => jobs::cancel(&api, job_id).await,
        Command::Retry { job_id } => jobs::retry(&api, job_id).await,
        Command::List { limit, cursor } => jobs::list(&api, *limit, cursor.as_deref()).await,
    }
}

fn main() {
    let cli = Cli::parse();
    let ui = Arc::new(Ui::new(Mode::detect(cli.json)));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("haul: cannot start: {err}");
            std::process::exit(1);
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(&cli, ui.clone()) => outcome,
            _ = tokio::signal::ctrl_c() => {
                let mut message = "interrupted".to_string();
                if let Some(hint) = interrupt::interrupted_hint() {
                    message = format!("interrupted; {hint}");
                }
                Err(CliError::new(Exit::Interrupted, "interrupted", message))
            }
        }
    });
    interrupt::remove_partial();
    // A closed stdout (`| head`) is not worth a panic: the outcome is in the exit code.
    let print = |text: &dyn std::fmt::Display| {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    };
    match outcome {
        Ok(output) => {
            if cli.json {
                print(&output.json);
            } else {
                print(&output.text);
            }
        }
        Err(err) => {
            ui.clear();
            // A batch with some files saved prints its report as a success would, with the
            // error in it.
            if let Some(report) = &err.report {
                if cli.json {
                    print(&report.json);
                } else {
                    print(&report.text);
                }
            }
            eprintln!("haul: error: {err}");
            if cli.json && err.report.is_none() {
                print(&err.to_json());
            }
            std::process::exit(err.exit.code());
        }
    }
}
