//! `skein-sim`'s command line: thin plumbing from subcommands to the simulations.
//!
//! - `skein-sim [node] ...`: the whole-node simulation ([`node`]; the default);
//! - `skein-sim cluster ...`: the metadata-quorum cluster ([`crate::cluster`]);
//! - `skein-sim groups [--protocol classic|consumer] ...`: consumer groups, classic
//!   ([`crate::groups`]) or KIP-848 ([`crate::groups::kip848`]);
//! - `skein-sim replication ...`: partition replication ([`crate::replication`]).
//!
//! Each harness scenario takes the flags of [`scenario`]. Exit 1 if a run violates an
//! invariant, 2 on bad usage.

pub mod node;
pub mod scenario;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::process::ExitCode;

use crate::cluster::ClusterScenario;
use crate::groups::kip848::Kip848Scenario;
use crate::groups::GroupsScenario;
use crate::replication::ReplScenario;

/// Runs the command line `argv` (`argv[0]` is the program).
pub fn main(argv: Vec<String>) -> ExitCode {
    let rest = &argv[1.min(argv.len())..];
    match argv.get(1).map(String::as_str) {
        Some("node") => node::main(rest),
        Some("cluster") => scenario::main::<ClusterScenario>(rest),
        Some("replication") => scenario::main::<ReplScenario>(rest),
        Some("groups") => {
            let (protocol, rest) = match take_protocol(rest) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("skein-sim groups: {e}");
                    return ExitCode::from(2);
                }
            };
            match protocol.as_deref() {
                None | Some("classic") => scenario::main::<GroupsScenario>(&rest),
                Some("consumer") => scenario::main::<Kip848Scenario>(&rest),
                Some(other) => {
                    eprintln!(
                        "skein-sim groups: unknown --protocol {other:?}; known: classic, consumer"
                    );
                    ExitCode::from(2)
                }
            }
        }
        _ => node::main(&argv),
    }
}

/// Takes `--protocol P` (or `--protocol=P`) out of `argv`.
fn take_protocol(argv: &[String]) -> Result<(Option<String>, Vec<String>), String> {
    let (mut protocol, mut rest) = (None, Vec::new());
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a == "--protocol" {
            protocol = Some(
                it.next()
                    .ok_or("--protocol needs classic or consumer")?
                    .clone(),
            );
        } else if let Some(p) = a.strip_prefix("--protocol=") {
            protocol = Some(p.to_string());
        } else {
            rest.push(a.clone());
        }
    }
    Ok((protocol, rest))
}

/// Parses `A..B` (B exclusive, not empty).
pub fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s.split_once("..").ok_or("expected A..B")?;
    let a: u64 = a.trim().parse().map_err(|e| format!("start {a:?}: {e}"))?;
    let b: u64 = b.trim().parse().map_err(|e| format!("end {b:?}: {e}"))?;
    if a >= b {
        return Err("empty range".into());
    }
    Ok(a..b)
}

/// Opens the `--trace` file, if one was asked for.
pub fn open_trace(path: &Option<String>) -> Result<Option<Box<dyn Write>>, String> {
    match path {
        Some(path) => match File::create(path) {
            Ok(f) => Ok(Some(Box::new(BufWriter::new(f)))),
            Err(e) => Err(format!("cannot create {path}: {e}")),
        },
        None => Ok(None),
    }
}
