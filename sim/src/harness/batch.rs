//! The batch runner: runs seeds one after another, prints the summary of every failing run (of
//! every run with `verbose`) with its report, a progress line on stderr (a bar on a terminal),
//! and the verdict line (`all N <what> seeds passed` / `K of N <what> seeds failed: ...`, which
//! ci/test.sh reads).

use std::io::IsTerminal;
use std::ops::Range;
use std::time::Instant;

use super::Report;

/// How a batch prints.
#[derive(Debug, Clone, Copy)]
pub struct BatchStyle<'a> {
    /// One seed (`--seed`): print its summary, no progress, no verdict line.
    pub single: bool,
    /// Print every run's summary, not only failures.
    pub verbose: bool,
    /// The simulation's name in the verdict line (`cluster`), empty for the node simulation.
    pub what: &'a str,
}

/// Runs `run` over `seeds`; returns the failing seeds.
pub fn run_batch<R: Report>(
    seeds: Range<u64>,
    style: BatchStyle<'_>,
    mut run: impl FnMut(u64) -> R,
) -> Vec<u64> {
    let tty = std::io::stderr().is_terminal();
    // Wall-clock time only measures the simulator's own speed; no run depends on it.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let total = seeds.end - seeds.start;
    let (mut steps, mut sim_ms, mut failed) = (0u64, 0u64, Vec::new());
    for (i, seed) in seeds.enumerate() {
        let o = run(seed);
        steps += o.steps();
        sim_ms += o.sim_ms();
        let bad = o.violation().is_some();
        if style.single || style.verbose || bad {
            if tty && !style.single {
                eprint!("\r\x1b[K");
            }
            println!("{}", o.summary());
        }
        if bad {
            println!("{}", o.report());
            failed.push(seed);
        }
        let done = i as u64 + 1;
        let every = if tty { 5 } else { 100 };
        if !style.single && (done.is_multiple_of(every) || done == total) {
            let p = Progress {
                done,
                total,
                failed: failed.len(),
                steps,
                sim_ms,
            };
            p.print(started, tty);
        }
    }
    if !style.single {
        let what = if style.what.is_empty() {
            String::new()
        } else {
            format!("{} ", style.what)
        };
        if failed.is_empty() {
            println!("all {total} {what}seeds passed");
        } else {
            let list: Vec<String> = failed.iter().map(|s| s.to_string()).collect();
            println!(
                "{} of {total} {what}seeds failed: {}",
                failed.len(),
                list.join(" ")
            );
        }
    }
    failed
}

/// Where a batch stands.
struct Progress {
    done: u64,
    total: u64,
    failed: usize,
    steps: u64,
    sim_ms: u64,
}

impl Progress {
    /// One progress line (a bar when stderr is a terminal).
    fn print(&self, started: Instant, tty: bool) {
        let wall = started.elapsed().as_secs_f64().max(1e-9);
        let line = format!(
            "[{}/{}] failed={} {:.0} steps/s, {:.0} sim-s per wall-s, {:.0} seeds/min",
            self.done,
            self.total,
            self.failed,
            self.steps as f64 / wall,
            self.sim_ms as f64 / 1000.0 / wall,
            self.done as f64 * 60.0 / wall
        );
        if tty {
            let width = 30usize;
            let filled = (self.done * width as u64 / self.total.max(1)) as usize;
            eprint!(
                "\r[{}{}] {line}\x1b[K",
                "#".repeat(filled),
                "-".repeat(width - filled)
            );
            if self.done == self.total {
                eprintln!();
            }
        } else {
            eprintln!("{line}");
        }
    }
}
