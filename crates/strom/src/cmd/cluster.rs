//! `strom cluster info`: brokers, controller, cluster id, topic and partition counts,
//! from a Metadata request made by librdkafka.

use std::process::ExitCode;

use rdkafka::client::{Client, ClientContext};
use serde::Serialize;

use super::client::{ClientArgs, Output, print_json, print_table};

/// `strom cluster ...`
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  strom cluster info --output json")]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClusterCommand {
    /// Show the brokers, the controller, and how many topics and partitions there are.
    #[command(after_help = "Example:\n  strom cluster info -b 127.0.0.1:9092")]
    Info,
}

#[derive(Debug, Serialize)]
struct Info {
    cluster_id: Option<String>,
    /// `None` when the broker did not say.
    controller: Option<i32>,
    brokers: Vec<Broker>,
    /// User topics (internal `__*` topics are counted apart).
    topics: usize,
    partitions: usize,
    internal_topics: usize,
}

#[derive(Debug, Serialize)]
struct Broker {
    id: i32,
    host: String,
    port: i32,
}

/// Runs `strom cluster ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ClusterCommand::Info = args.command;
    let c = &args.client;
    let admin = c.admin()?;
    let md = c.metadata(admin.inner(), None)?;
    let mut brokers: Vec<Broker> =
        md.brokers().iter().map(|b| Broker { id: b.id(), host: b.host().to_owned(), port: b.port() }).collect();
    brokers.sort_by_key(|b| b.id);
    let (internal, user): (Vec<_>, Vec<_>) =
        md.topics().iter().filter(|t| t.error().is_none()).partition(|t| t.name().starts_with("__"));
    let info = Info {
        cluster_id: admin.inner().fetch_cluster_id(c.timeout),
        controller: controller_id(admin.inner(), c.timeout),
        topics: user.len(),
        partitions: user.iter().map(|t| t.partitions().len()).sum(),
        internal_topics: internal.len(),
        brokers,
    };
    match c.output {
        Output::Json => print_json(&info)?,
        Output::Table => {
            let show = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
            println!("cluster id: {}", show(info.cluster_id.clone()));
            println!("controller: {}", show(info.controller.map(|c| c.to_string())));
            println!("topics:     {} ({} partitions)", info.topics, info.partitions);
            println!();
            print_table(
                &["id", "host", "port", "controller"],
                info.brokers
                    .iter()
                    .map(|b| {
                        let is_controller = if Some(b.id) == info.controller { "*" } else { "" };
                        vec![b.id.to_string(), b.host.clone(), b.port.to_string(), is_controller.to_owned()]
                    })
                    .collect(),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The controller's broker id from the client's last metadata, if the broker reported one.
///
/// The `rdkafka` crate does not wrap `rd_kafka_controllerid`, so call it directly.
#[allow(unsafe_code)]
fn controller_id<C: ClientContext>(client: &Client<C>, timeout: std::time::Duration) -> Option<i32> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `native_ptr` is the live `rd_kafka_t` owned by `client`, which outlives this
    // call; `rd_kafka_controllerid` only reads the handle's cached metadata (waiting up to
    // `ms` for it) and returns a plain integer.
    let id = unsafe { rdkafka::bindings::rd_kafka_controllerid(client.native_ptr(), ms) };
    (id >= 0).then_some(id)
}
