//! skein-cli: the admin and client subcommands of the `skein` binary: `topics`, `cluster`,
//! `groups`, `produce`, `consume`, one module per verb.
//!
//! The verbs are a thin layer over skein-client: they parse arguments, call the library
//! ([`skein_client::Cluster`], [`skein_client::Producer`], [`skein_client::Consumer`], the
//! admin requests) and print. Any Kafka error ends the command with a message that names the
//! error code the way Kafka does (e.g. `UNKNOWN_TOPIC_OR_PARTITION`); the library retries
//! retriable ones a bounded number of times after refreshing metadata first.

use std::io::Write;

use anyhow::Context;

mod cluster;
mod consume;
mod datetime;
mod groups;
mod produce;
mod topics;

pub use cluster::{run_cluster, ClusterCmd};
pub use consume::{run_consume, ConsumeArgs};
pub use groups::{run_groups, GroupsCmd, ResetOffsetsArgs, ResetTo};
pub use produce::{run_produce, ProduceArgs};
pub use topics::{run_topics, TopicsCmd};

/// Writes to stdout; `Ok(false)` if the reader went away (e.g. `| head`).
fn write_stdout(bytes: &[u8]) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: TestCmd,
    }

    #[derive(Debug, clap::Subcommand)]
    enum TestCmd {
        #[command(subcommand)]
        Topics(TopicsCmd),
        Produce(ProduceArgs),
        Consume(ConsumeArgs),
    }

    fn parse(args: &[&str]) -> Result<TestCmd, clap::Error> {
        TestCli::try_parse_from(std::iter::once("skein").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn cli_defaults_and_validation() {
        let TestCmd::Topics(TopicsCmd::Create {
            name,
            partitions,
            config,
            replication_factor,
        }) = parse(&[
            "topics",
            "create",
            "t",
            "--config",
            "retention.ms=5",
            "--config",
            "a=b=c",
        ])
        .unwrap()
        else {
            panic!("not create")
        };
        assert_eq!((name.as_str(), partitions, replication_factor), ("t", 1, 1));
        assert_eq!(
            config,
            vec![
                ("retention.ms".into(), "5".into()),
                ("a".into(), "b=c".into())
            ]
        );
        assert!(parse(&["topics", "create", "t", "--config", "novalue"]).is_err());
        assert!(parse(&["topics", "create", "t", "--partitions", "0"]).is_err());

        let TestCmd::Produce(p) = parse(&["produce", "t"]).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.acks, p.idempotent, p.partition, p.key_separator),
            (-1, true, None, None)
        );
        let TestCmd::Produce(p) =
            parse(&["produce", "t", "--acks", "1", "--idempotent", "false"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((p.acks, p.idempotent), (1, false));
        let TestCmd::Produce(p) =
            parse(&["produce", "t", "--acks", "all", "--idempotent"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((p.acks, p.idempotent), (-1, true));
        assert!(parse(&["produce", "t", "--acks", "2"]).is_err());

        let TestCmd::Consume(c) = parse(&["consume", "t"]).unwrap() else {
            panic!()
        };
        assert_eq!(c.idle_timeout_ms, 5000);
        assert_eq!(c.key_separator, "\t");
        assert!(!c.from_beginning && !c.print_key);
        assert!(
            parse(&["consume", "t", "--offset", "3"]).is_err(),
            "--offset needs --partition"
        );
        assert!(parse(&["consume", "t", "--partition", "0", "--offset", "3"]).is_ok());
        assert!(parse(&[
            "consume",
            "t",
            "--partition",
            "0",
            "--offset",
            "3",
            "--from-beginning"
        ])
        .is_err());
    }
}
