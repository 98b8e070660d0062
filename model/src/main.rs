//! `skein-model check raft [--depth N] [--threads N] [--canary C] [bounds...]`
//! `skein-model check partition [--depth N] [--threads N] [--canary C] [bounds...]`
//! `skein-model explore raft|partition [--port P]`

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use skein_core::canary::Canary;
use skein_model::partition::{self, PartitionCanary, PartitionModel};
use skein_model::raft::{Bounds, Network, RaftModel};
use stateright::Model;

#[derive(Parser)]
#[command(
    name = "skein-model",
    about = "Stateright model checking of skein-core's Raft and partition leadership"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explore every state within the bounds and report each property's verdict.
    Check {
        /// The model: `raft` (controller quorum) or `partition` (partition leadership).
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
    Partition,
}

#[derive(Clone, Copy, ValueEnum)]
enum CanaryArg {
    /// raft
    VoteTwice,
    /// raft
    CommitOldTerm,
    /// raft
    NoCheckQuorum,
    /// partition
    ElectOutsideIsr,
    /// partition
    HwFromLeaderOnly,
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
    /// Highest term any node may reach [default: 1; 2 with --reliable]. Every bound left unset
    /// is the one ci/test.sh checks.
    #[arg(long)]
    term_max: Option<u64>,
    /// Longest log any node may hold [default: 2].
    #[arg(long)]
    log_len_max: Option<u64>,
    /// Most distinct messages in flight [default: 2; 4 with --reliable].
    #[arg(long)]
    in_flight_max: Option<usize>,
    /// Most timeouts fired in total [default: 2; 3 with --reliable].
    #[arg(long)]
    timeouts_max: Option<u8>,
    /// Most crashes (lossy network only) [default: 1].
    #[arg(long)]
    crashes_max: Option<u8>,
    /// Most client proposals [default: 1].
    #[arg(long)]
    proposals_max: Option<u8>,
    /// Most duplicated deliveries (lossy network only) [default: 0].
    #[arg(long)]
    duplicates_max: Option<u8>,
    /// partition: highest leader epoch.
    #[arg(long, default_value_t = partition::Bounds::default().epoch_max)]
    epoch_max: i32,
    /// partition: longest log (records).
    #[arg(long, default_value_t = partition::Bounds::default().log_len_max)]
    log_len_max_records: usize,
    /// partition: most ISR proposals in flight.
    #[arg(long, default_value_t = partition::Bounds::default().in_flight_max)]
    isr_in_flight_max: usize,
    /// partition: most crashes and fences.
    #[arg(long, default_value_t = partition::Bounds::default().crashes_max)]
    faults_max: u8,
    /// partition: most clock advances past replica.lag.time.max.ms.
    #[arg(long, default_value_t = partition::Bounds::default().advances_max)]
    advances_max: u8,
    /// partition: min.insync.replicas.
    #[arg(long, default_value_t = partition::Bounds::default().min_isr)]
    min_isr: usize,
}

impl Opts {
    fn model(&self) -> RaftModel {
        // Unset bounds are the ones CI checks, which differ with --reliable.
        let d = if self.reliable {
            Bounds::reliable()
        } else {
            Bounds::default()
        };
        let bounds = Bounds {
            term_max: self.term_max.unwrap_or(d.term_max),
            log_len_max: self.log_len_max.unwrap_or(d.log_len_max),
            in_flight_max: self.in_flight_max.unwrap_or(d.in_flight_max),
            timeouts_max: self.timeouts_max.unwrap_or(d.timeouts_max),
            crashes_max: if self.reliable {
                0
            } else {
                self.crashes_max.unwrap_or(d.crashes_max)
            },
            proposals_max: self.proposals_max.unwrap_or(d.proposals_max),
            duplicates_max: if self.reliable {
                0
            } else {
                self.duplicates_max.unwrap_or(d.duplicates_max)
            },
        };
        let canary = self.canary.and_then(|c| match c {
            CanaryArg::VoteTwice => Some(Canary::VoteTwice),
            CanaryArg::CommitOldTerm => Some(Canary::CommitOldTerm),
            CanaryArg::NoCheckQuorum => Some(Canary::NoCheckQuorum),
            _ => None,
        });
        let network = if self.reliable {
            Network::Reliable
        } else {
            Network::Lossy
        };
        RaftModel::new(network, bounds, canary)
    }

    fn partition_model(&self) -> PartitionModel {
        let bounds = partition::Bounds {
            epoch_max: self.epoch_max,
            log_len_max: self.log_len_max_records,
            in_flight_max: self.isr_in_flight_max,
            crashes_max: self.faults_max,
            advances_max: self.advances_max,
            min_isr: self.min_isr,
        };
        let canary = self.canary.and_then(|c| match c {
            CanaryArg::ElectOutsideIsr => Some(PartitionCanary::ElectOutsideIsr),
            CanaryArg::HwFromLeaderOnly => Some(PartitionCanary::HwFromLeaderOnly),
            _ => None,
        });
        PartitionModel::new(bounds, canary)
    }

    fn check_canary(&self, which: Which) -> Result<(), String> {
        let raft = matches!(
            self.canary,
            None | Some(CanaryArg::VoteTwice | CanaryArg::CommitOldTerm | CanaryArg::NoCheckQuorum)
        );
        let part = matches!(
            self.canary,
            None | Some(CanaryArg::ElectOutsideIsr | CanaryArg::HwFromLeaderOnly)
        );
        match which {
            Which::Raft if !raft => Err("that canary belongs to the partition model".into()),
            Which::Partition if !part => Err("that canary belongs to the raft model".into()),
            _ => Ok(()),
        }
    }
}

fn report(v: &skein_model::Verdict) -> ExitCode {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            model: which,
            opts,
            depth,
            threads,
            bfs,
            stop_on_failure,
        } => {
            if let Err(e) = opts.check_canary(which) {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            let run = skein_model::Run {
                depth_max: depth,
                threads,
                bfs,
                stop_on_failure,
            };
            let search = format!(
                "depth_max={} search={} threads={threads}",
                depth.map_or("none".to_string(), |d| d.to_string()),
                if bfs { "bfs" } else { "dfs" }
            );
            match which {
                Which::Raft => {
                    let model = opts.model();
                    println!(
                        "model raft: network={:?} canary={:?} {} {search}",
                        model.network, model.canary, model.bounds,
                    );
                    report(&skein_model::check(model, &run))
                }
                Which::Partition => {
                    let model = opts.partition_model();
                    println!(
                        "model partition: canary={:?} {} {search}",
                        model.canary, model.bounds,
                    );
                    report(&skein_model::check_partition(model, &run))
                }
            }
        }
        Command::Explore {
            model: which,
            opts,
            port,
        } => {
            if let Err(e) = opts.check_canary(which) {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            let addr = format!("127.0.0.1:{port}");
            match which {
                Which::Raft => {
                    println!(
                        "stateright explorer on http://{addr}/ ({})",
                        opts.model().bounds
                    );
                    opts.model().checker().serve(addr);
                }
                Which::Partition => {
                    let model = opts.partition_model();
                    println!("stateright explorer on http://{addr}/ ({})", model.bounds);
                    model.checker().serve(addr);
                }
            }
            ExitCode::SUCCESS
        }
    }
}
