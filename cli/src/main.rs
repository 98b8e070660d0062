//! The `skein` binary: `skein broker` runs a broker; the other verbs are a Kafka admin and
//! client CLI that talks the Kafka protocol to any broker.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use skein_broker::broker::Broker;
use skein_broker::config::BrokerArgs;
use tracing::{error, info};

/// Turns hostile wire lengths into lazily committed reservations instead of an abort.
#[global_allocator]
static ALLOC: skein_sys::alloc::GuardedAlloc = skein_sys::alloc::GuardedAlloc;

/// skein: a Kafka-compatible streaming platform.
#[derive(Parser)]
#[command(name = "skein", version, about, long_about = None)]
struct Cli {
    /// Broker to talk to, for the client verbs (not `broker`).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT"
    )]
    bootstrap: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (single node: 127.0.0.1:9092, data in ./skein-data, no config needed).
    Broker(Box<BrokerArgs>),
    /// Create, list, describe or delete topics.
    #[command(subcommand)]
    Topics(skein_cli::TopicsCmd),
    /// Show the cluster: metadata quorum and live brokers.
    #[command(subcommand)]
    Cluster(skein_cli::ClusterCmd),
    /// List, describe or delete consumer groups, or reset their committed offsets.
    #[command(subcommand)]
    Groups(skein_cli::GroupsCmd),
    /// Produce lines from stdin to a topic (optionally `key<SEP>value`).
    Produce(skein_cli::ProduceArgs),
    /// Print a topic's records to stdout.
    Consume(skein_cli::ConsumeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Broker(args) => run_broker(*args),
        Command::Topics(cmd) => client(|| skein_cli::run_topics(&cli.bootstrap, cmd)),
        Command::Cluster(cmd) => client(|| skein_cli::run_cluster(&cli.bootstrap, cmd)),
        Command::Groups(cmd) => client(|| skein_cli::run_groups(&cli.bootstrap, cmd)),
        Command::Produce(args) => client(|| skein_cli::run_produce(&cli.bootstrap, args)),
        Command::Consume(args) => client(|| skein_cli::run_consume(&cli.bootstrap, args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skein: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a client verb on a small runtime.
fn client<F: std::future::Future<Output = anyhow::Result<()>>>(
    f: impl FnOnce() -> F,
) -> anyhow::Result<()> {
    init_logging("warn");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(f());
    // stdin is read on a plain thread that may still be blocked; do not wait for it.
    rt.shutdown_background();
    result
}

fn init_logging(level: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

fn run_broker(args: BrokerArgs) -> anyhow::Result<()> {
    let settings = args.resolve()?;
    init_logging(&settings.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let broker = Broker::start(settings.clone()).await?;
        let listener = skein_sys::net::Listener::bind(settings.listen)
            .await
            .with_context(|| format!("listening on {}", settings.listen))?;
        info!(
            listen = %settings.listen,
            advertise = format!("{}:{}", settings.advertise_host, settings.advertise_port),
            node_id = settings.node_id,
            cluster_id = %broker.cluster_id(),
            voters = settings.voters.len().max(1),
            "skein broker ready"
        );
        broker.spawn_background();
        let stop = broker.shutting_down.subscribe();
        let server = tokio::spawn(skein_broker::server::serve(broker.clone(), listener, stop));
        let quorum = broker.quorum().clone();
        let failed = tokio::select! {
            _ = wait_for_signal() => false,
            _ = quorum.stopped() => true,
        };
        if failed {
            // Serving from metadata that no longer advances would be wrong: fail-stop, and let
            // a supervisor restart the broker (it recovers the quorum state from disk).
            error!("the metadata quorum stopped (see the error above); shutting down");
        } else {
            info!("shutting down");
            // Hand leadership to other replicas first, so clients move on without waiting
            // for a session timeout.
            broker
                .controlled_shutdown(std::time::Duration::from_secs(5))
                .await;
        }
        broker.shutting_down.send_replace(true);
        let _ = server.await;
        let b = broker.clone();
        match tokio::task::spawn_blocking(move || b.close()).await {
            Ok(Ok(())) => info!("clean shutdown complete"),
            Ok(Err(e)) => error!(error = %e, "shutdown was not clean"),
            Err(e) => error!(error = %e, "shutdown task failed"),
        }
        if failed {
            anyhow::bail!("stopped because the metadata quorum failed");
        }
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
