//! `skein-model check raft [--depth N] [--threads N] [--canary C] [bounds...]`
//! `skein-model explore raft [--port P]`

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use skein_core::canary::Canary;
use skein_model::raft::{Bounds, Network, RaftModel};
use stateright::Model;

#[derive(Parser)]
#[command(
    name = "skein-model",
    about = "Stateright model checking of skein-core's Raft"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explore every state within the bounds and report each property's verdict.
    Check {
        /// The model (only `raft` so far; `partition` waits for replication).
        model: Which,
        #[command(flatten)]
        opts: Opts,
        /// Stop at this depth (default: run to exhaustion of the bounds).
        #[arg(long)]
        depth: Option<usize>,
        /// Checker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Breadth-first search (shortest counterexamples; much more memory) instead of DFS.
        #[arg(long)]
        bfs: bool,
        /// Stop at the first violation instead of exhausting the bounds.
        #[arg(long)]
        stop_on_failure: bool,
    },
    /// Serve stateright's explorer on 127.0.0.1.
    Explore {
        /// The model.
        model: Which,
        #[command(flatten)]
        opts: Opts,
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = 3000)]
        port: u16,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Raft,
}

#[derive(Clone, Copy, ValueEnum)]
enum CanaryArg {
    VoteTwice,
    CommitOldTerm,
    NoCheckQuorum,
}

#[derive(clap::Args)]
struct Opts {
    /// Plant a bug in every node (skein-core's canaries).
    #[arg(long)]
    canary: Option<CanaryArg>,
    /// Reliable network (no loss, duplication or crash; timeouts only when quiescent) and the
    /// eventually property.
    #[arg(long)]
    reliable: bool,
    /// Highest term any node may reach.
    #[arg(long, default_value_t = Bounds::default().term_max)]
    term_max: u64,
    /// Longest log any node may hold.
    #[arg(long, default_value_t = Bounds::default().log_len_max)]
    log_len_max: u64,
    /// Most distinct messages in flight.
    #[arg(long, default_value_t = Bounds::default().in_flight_max)]
    in_flight_max: usize,
    /// Most timeouts fired in total.
    #[arg(long, default_value_t = Bounds::default().timeouts_max)]
    timeouts_max: u8,
    /// Most crashes (lossy network only).
    #[arg(long, default_value_t = Bounds::default().crashes_max)]
    crashes_max: u8,
    /// Most client proposals.
    #[arg(long, default_value_t = Bounds::default().proposals_max)]
    proposals_max: u8,
    /// Most duplicated deliveries (lossy network only).
    #[arg(long, default_value_t = Bounds::default().duplicates_max)]
    duplicates_max: u8,
}

impl Opts {
    fn model(&self) -> RaftModel {
        let bounds = Bounds {
            term_max: self.term_max,
            log_len_max: self.log_len_max,
            in_flight_max: self.in_flight_max,
            timeouts_max: self.timeouts_max,
            crashes_max: if self.reliable { 0 } else { self.crashes_max },
            proposals_max: self.proposals_max,
            duplicates_max: if self.reliable {
                0
            } else {
                self.duplicates_max
            },
        };
        let canary = self.canary.map(|c| match c {
            CanaryArg::VoteTwice => Canary::VoteTwice,
            CanaryArg::CommitOldTerm => Canary::CommitOldTerm,
            CanaryArg::NoCheckQuorum => Canary::NoCheckQuorum,
        });
        let network = if self.reliable {
            Network::Reliable
        } else {
            Network::Lossy
        };
        RaftModel::new(network, bounds, canary)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            model: Which::Raft,
            opts,
            depth,
            threads,
            bfs,
            stop_on_failure,
        } => {
            let model = opts.model();
            println!(
                "model raft: network={:?} canary={:?} {} depth_max={} search={} threads={threads}",
                model.network,
                model.canary,
                model.bounds,
                depth.map_or("none".to_string(), |d| d.to_string()),
                if bfs { "bfs" } else { "dfs" }
            );
            let run = skein_model::Run {
                depth_max: depth,
                threads,
                bfs,
                stop_on_failure,
            };
            let v = skein_model::check(model, &run);
            println!("states={} depth={} secs={:.1}", v.states, v.depth, v.secs);
            for (name, kind, holds, path) in &v.properties {
                let verdict = match (kind, holds) {
                    (&"sometimes", true) => "example found",
                    (&"sometimes", false) => "NO EXAMPLE (bound too small: vacuous)",
                    (_, true) => "holds",
                    (_, false) => "VIOLATED",
                };
                println!("  {kind:<10} {name}: {verdict}");
                if let Some(p) = path {
                    println!("  counterexample ({name}):\n{p}");
                }
            }
            if v.ok() {
                ExitCode::SUCCESS
            } else {
                println!("FAILED: {}", v.failed().join(", "));
                ExitCode::FAILURE
            }
        }
        Command::Explore {
            model: Which::Raft,
            opts,
            port,
        } => {
            let addr = format!("127.0.0.1:{port}");
            println!(
                "stateright explorer on http://{addr}/ ({})",
                opts.model().bounds
            );
            opts.model().checker().serve(addr);
            ExitCode::SUCCESS
        }
    }
}
