//! `haul-ops`: the operator's command. Usage and the IAM policy it needs: docs/operations.md.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use haul::job::JobId;
use haul::priority::Priority;
use haul_ops::{Clients, DeadLetters, MappingChange, Ops, OpsError, Redrive, Status};

#[derive(Debug, Parser)]
#[command(
    name = "haul-ops",
    about = "Operate a deployed haul: queue depths, dead letters, redrive, webhook replay, pausing a priority",
    long_about = "Operate a deployed haul with the operator's AWS credentials (the SDK's usual \
                  settings: AWS_PROFILE, AWS_REGION, ...). Its resources come from the outputs \
                  of the CloudFormation stack named by --stack."
)]
struct Cli {
    /// The stack `sam deploy` made (samconfig.toml: haul-dev, or haul-prod).
    #[arg(long, env = "HAUL_OPS_STACK", default_value = "haul-dev")]
    stack: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Per priority: waiting, in flight, oldest age, mapping state; dead letters; running jobs.
    Status,
    /// Move a dead-letter queue's messages back to the queues they came from.
    Redrive {
        /// `jobs` (the work queues' DLQ) or `notify` (the notify queue's).
        #[arg(default_value = "jobs")]
        queue: DeadLetters,
        /// At most this many messages a second (SQS's own pace when not given).
        #[arg(long)]
        max_per_second: Option<i32>,
        /// Follow the move until it ends, at most this many seconds.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Send a job's webhook for the state it ended in again.
    ReplayWebhook {
        /// The job's id.
        job: JobId,
    },
    /// Stop a priority's work being started (its jobs wait in the queue).
    Pause {
        priority: Priority,
        /// Wait until the mapping is off, at most this many seconds.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Start a paused priority's work again.
    Resume {
        priority: Priority,
        /// Wait until the mapping is on, at most this many seconds.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("haul-ops: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<(), OpsError> {
    let sdk = haul::services::sdk_config().await;
    let ops = Ops::connect(Clients::new(&sdk, None), &cli.stack).await?;
    let seconds = |s: &Option<u64>| s.map(Duration::from_secs);
    let (json, text) = match &cli.command {
        Command::Status => {
            let status = ops.status().await?;
            (to_json(&status), status_text(&status))
        }
        Command::Redrive {
            queue,
            max_per_second,
            wait,
        } => {
            let done = ops.redrive(*queue, *max_per_second, seconds(wait)).await?;
            (to_json(&done), redrive_text(&done))
        }
        Command::ReplayWebhook { job } => {
            let replay = ops.replay_webhook(*job).await?;
            let how = match replay.reopened {
                true => "its settled delivery opened again",
                false => "its delivery was not settled",
            };
            let text = format!(
                "{} of {} queued for the notifier ({how}); webhook-id {}",
                replay.event, replay.job_id, replay.webhook_id
            );
            (to_json(&replay), text)
        }
        Command::Pause { priority, wait } | Command::Resume { priority, wait } => {
            let enable = matches!(cli.command, Command::Resume { .. });
            let change = ops.set_enabled(*priority, enable, seconds(wait)).await?;
            (to_json(&change), mapping_text(&change, enable))
        }
    };
    println!("{}", if cli.json { json } else { text });
    Ok(())
}

fn redrive_text(done: &Redrive) -> String {
    let task = done.task.as_ref().map_or("no task".into(), |t| {
        format!(
            "task {}: {} moved of {}{}",
            t.status,
            t.moved,
            t.to_move.map_or("?".into(), |n| n.to_string()),
            t.failure_reason
                .as_ref()
                .map_or(String::new(), |r| format!(" ({r})"))
        )
    });
    let what = match (done.started, done.found) {
        (true, n) => format!("{n} messages found, moving them back to their queues"),
        (false, 0) => "nothing to move".into(),
        (false, _) => "a move is already running; none started".into(),
    };
    format!("{} dead letters: {what}; {task}", done.dead_letters)
}

fn mapping_text(change: &MappingChange, enable: bool) -> String {
    let verb = if enable { "resumed" } else { "paused" };
    let (priority, id, state) = (change.priority, &change.id, &change.state);
    match change.changed {
        true => format!("{priority} {verb}: mapping {id} is {state}"),
        false => format!("{priority} was {verb} already: mapping {id} is {state}"),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn status_text(status: &Status) -> String {
    let mut out = format!(
        "{:<8} {:>8} {:>9} {:>8} {:>11}  {}\n",
        "priority", "waiting", "in flight", "delayed", "oldest (s)", "mapping"
    );
    for q in &status.queues {
        let age = q
            .oldest_age_seconds
            .map_or("unknown".into(), |a| a.to_string());
        out.push_str(&format!(
            "{:<8} {:>8} {:>9} {:>8} {:>11}  {}\n",
            q.priority.as_str(),
            q.waiting,
            q.in_flight,
            q.delayed,
            age,
            q.mapping
        ));
    }
    out.push_str(&format!("oldest age: {}\n", status.oldest_age_source));
    for d in &status.dead_letters {
        out.push_str(&format!(
            "dead letters ({}): {} ({} in flight)\n",
            d.queue, d.messages, d.in_flight
        ));
    }
    let r = &status.running;
    out.push_str(&format!(
        "running jobs: high {}, normal {}, low {} (of which batches: {})",
        r.high, r.normal, r.low, r.batches
    ));
    out
}
