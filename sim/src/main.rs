//! `skein-sim`: the deterministic simulator's command line (see `skein_sim::cli`): `skein-sim
//! [node] ...` (the default), `skein-sim cluster ...`, `skein-sim replication ...` and
//! `skein-sim groups [--protocol classic|consumer] ...`. Exit 1 if any run violates an
//! invariant, 2 on bad usage.

use std::process::ExitCode;

fn main() -> ExitCode {
    skein_sim::cli::main(std::env::args().collect())
}
