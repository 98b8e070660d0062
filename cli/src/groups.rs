//! `skein groups ...`: consumer groups, shown and managed the way kafka-consumer-groups.sh
//! does it.
//!
//! The requests are skein-client's ([`skein_client::group_admin`]: every group request goes
//! to the group's coordinator, except ListGroups, which each live broker answers for the
//! groups it coordinates); log start and end offsets come from ListOffsets at the
//! partitions' leaders. This module plans offset resets, parses and prints.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use skein_client::group_admin::{self, ListedGroup};
use skein_client::{code, list_offsets, Cluster, OFFSET_EARLIEST, OFFSET_LATEST};

use crate::datetime::parse_iso_datetime;
use crate::write_stdout;

mod format;
use format::{dash_if_empty, format_group_description, format_table};

/// `skein groups ...`: list, describe, delete consumer groups and reset their offsets.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum GroupsCmd {
    /// List the groups of every live broker: GROUP, STATE, PROTOCOL-TYPE.
    List,
    /// Show a group's state, members and, per partition, committed offset, log end and lag.
    Describe {
        /// Group id.
        #[arg(value_parser = parse_group_id)]
        group: String,
    },
    /// Delete a group without members, and its committed offsets.
    Delete {
        /// Group id.
        #[arg(value_parser = parse_group_id)]
        group: String,
    },
    /// Move a group's committed offsets of one topic (only while the group has no members).
    ResetOffsets(ResetOffsetsArgs),
}

/// `skein groups reset-offsets GROUP --topic T --to-...`.
#[derive(Debug, Clone, clap::Args)]
pub struct ResetOffsetsArgs {
    /// Group id.
    #[arg(value_parser = parse_group_id)]
    pub group: String,
    /// Topic whose committed offsets to move.
    #[arg(long)]
    pub topic: String,
    /// Where to move them.
    #[command(flatten)]
    pub to: ResetTo,
    /// Only this partition (repeatable; default: every partition of the topic).
    #[arg(long = "partition", value_name = "P",
          value_parser = clap::value_parser!(i32).range(0..))]
    pub partitions: Vec<i32>,
    /// Print the new offsets without committing them.
    #[arg(long)]
    pub dry_run: bool,
}

/// The target of a reset: exactly one of these.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ResetTo {
    /// Each partition's log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// Each partition's log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// This offset, clamped into each partition's [log start, log end].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub to_offset: Option<i64>,
    /// The first record with a timestamp at or after this ISO 8601 time (e.g.
    /// 2026-11-25T10:00:00Z or 2026-11-25T11:00:00+01:00; no zone means UTC); the log end
    /// where no record is that new.
    #[arg(long, value_name = "DATETIME", value_parser = parse_datetime_arg)]
    pub to_datetime: Option<i64>,
}

/// A reset target, from [`ResetTo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetTarget {
    Earliest,
    Latest,
    Offset(i64),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
}

impl ResetTo {
    /// The target; clap's group has already refused none or several.
    fn target(&self) -> anyhow::Result<ResetTarget> {
        Ok(
            match (
                self.to_earliest,
                self.to_latest,
                self.to_offset,
                self.to_datetime,
            ) {
                (true, _, _, _) => ResetTarget::Earliest,
                (_, true, _, _) => ResetTarget::Latest,
                (_, _, Some(n), _) => ResetTarget::Offset(n),
                (_, _, _, Some(ms)) => ResetTarget::Timestamp(ms),
                (false, false, None, None) => bail!(
                    "say where to reset to: --to-earliest, --to-latest, --to-offset or \
                     --to-datetime"
                ),
            },
        )
    }
}

fn parse_group_id(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("the group id must not be empty".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

fn parse_datetime_arg(s: &str) -> Result<i64, String> {
    parse_iso_datetime(s).map_err(|e| {
        format!("{e} (expected ISO 8601 like 2026-11-25T10:00:00Z or 2026-11-25T11:00:00+01:00)")
    })
}

/// Runs `skein groups ...` against the broker at `bootstrap` (HOST:PORT).
pub async fn run_groups(bootstrap: &str, cmd: GroupsCmd) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(bootstrap).await?;
    // The live brokers: ListGroups goes to each, and the coordinator is one of them.
    cluster.metadata(Some(&[])).await?;
    match cmd {
        GroupsCmd::List => list_groups(&mut cluster).await,
        GroupsCmd::Describe { group } => describe(&mut cluster, &group).await,
        GroupsCmd::Delete { group } => delete_group(&mut cluster, &group).await,
        GroupsCmd::ResetOffsets(args) => reset_offsets(&mut cluster, &args).await,
    }
}

// ---------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------

async fn list_groups(cluster: &mut Cluster) -> anyhow::Result<()> {
    let nodes: Vec<i32> = cluster.brokers().keys().copied().collect();
    let mut groups: BTreeMap<String, ListedGroup> = BTreeMap::new();
    let mut failures = Vec::new();
    for node in nodes {
        match group_admin::list_groups_at(cluster, node).await {
            Ok(listed) => {
                if listed.still_loading {
                    eprintln!(
                        "warning: broker {node} is still loading groups; its list may be short"
                    );
                }
                for g in listed.groups {
                    groups.insert(g.id.clone(), g);
                }
            }
            Err(e) => failures.push(format!("broker {node}: {e:#}")),
        }
    }
    let rows: Vec<Vec<String>> = groups
        .into_values()
        .map(|g| vec![g.id, dash_if_empty(g.state), dash_if_empty(g.protocol_type)])
        .collect();
    write_stdout(format_table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows).as_bytes())?;
    if !failures.is_empty() {
        bail!(
            "the list is incomplete: ListGroups failed on {}",
            failures.join("; ")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// describe
// ---------------------------------------------------------------------------------------

/// Log end offsets of the given partitions; a topic or partition that no longer exists is
/// left out (with a warning), since a group may hold offsets of a deleted topic.
async fn log_end_offsets(
    cluster: &mut Cluster,
    partitions: &BTreeSet<(String, i32)>,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let mut ends = BTreeMap::new();
    for (name, wanted) in by_topic {
        let mut topic = match cluster.topic(name).await {
            Ok(t) => t,
            Err(e) => {
                eprintln!("warning: no log end offsets for topic '{name}': {e:#}");
                continue;
            }
        };
        let existing: Vec<i32> = wanted
            .iter()
            .copied()
            .filter(|p| topic.partitions.iter().any(|info| info.index == *p))
            .collect();
        let found = list_offsets(cluster, &mut topic, &existing, OFFSET_LATEST).await?;
        for (p, end) in found {
            ends.insert((name.to_owned(), p), end);
        }
    }
    Ok(ends)
}

async fn describe(cluster: &mut Cluster, group: &str) -> anyhow::Result<()> {
    let Some(description) = group_admin::describe_group(cluster, group).await? else {
        bail!("group '{group}' does not exist");
    };
    let committed = group_admin::fetch_committed(cluster, group).await?;
    let mut partitions: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    for m in &description.members {
        for (t, ps) in m.assignment.as_deref().unwrap_or_default() {
            partitions.extend(ps.iter().map(|p| (t.clone(), *p)));
        }
    }
    let ends = log_end_offsets(cluster, &partitions).await?;
    let coordinator = cluster
        .brokers()
        .get(&description.coordinator)
        .cloned()
        .unwrap_or_default();
    let out = format_group_description(group, &description, &coordinator, &committed, &ends);
    write_stdout(out.as_bytes())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// delete
// ---------------------------------------------------------------------------------------

async fn delete_group(cluster: &mut Cluster, group: &str) -> anyhow::Result<()> {
    match group_admin::delete_group(cluster, group).await {
        Ok(()) => {
            println!("Deleted group {group}.");
            Ok(())
        }
        Err(e) => match e.kafka_code() {
            Some(code::NON_EMPTY_GROUP) => {
                bail!("group {group} has active members; stop them first")
            }
            Some(code::GROUP_ID_NOT_FOUND) => bail!("group '{group}' does not exist"),
            _ => Err(e.into()),
        },
    }
}

// ---------------------------------------------------------------------------------------
// reset-offsets
// ---------------------------------------------------------------------------------------

/// `n` moved into `[log_start, log_end]` (a log end below its start, which a racing
/// deletion could show, counts as the start).
fn clamp_offset(n: i64, log_start: i64, log_end: i64) -> i64 {
    n.max(log_start).min(log_end.max(log_start))
}

/// The new offset of one partition. `at_time` is what ListOffsets found for a timestamp
/// target: -1 (or absent) when no record is that new, which means the log end.
fn plan_offset(target: ResetTarget, log_start: i64, log_end: i64, at_time: Option<i64>) -> i64 {
    let wanted = match target {
        ResetTarget::Earliest => log_start,
        ResetTarget::Latest => log_end,
        ResetTarget::Offset(n) => n,
        ResetTarget::Timestamp(_) => match at_time {
            Some(o) if o >= 0 => o,
            _ => log_end,
        },
    };
    clamp_offset(wanted, log_start, log_end)
}

async fn reset_offsets(cluster: &mut Cluster, args: &ResetOffsetsArgs) -> anyhow::Result<()> {
    let group = args.group.as_str();
    // A group that does not exist yet is fine: the commit creates it, as in Kafka.
    if let Some(d) = group_admin::describe_group(cluster, group).await? {
        if !d.is_inactive() {
            let members = match d.members.len() {
                1 => "1 member".to_owned(),
                n => format!("{n} members"),
            };
            bail!(
                "group '{group}' has active members (state {}, {members}); stop them before \
                 resetting its offsets",
                d.state,
            );
        }
    }
    let mut topic = cluster.topic(&args.topic).await?;
    let partitions: Vec<i32> = if args.partitions.is_empty() {
        topic.partitions.iter().map(|p| p.index).collect()
    } else {
        let mut ps = args.partitions.clone();
        ps.sort_unstable();
        ps.dedup();
        if let Some(p) = ps
            .iter()
            .find(|p| !topic.partitions.iter().any(|info| info.index == **p))
        {
            bail!(
                "partition {p} does not exist: topic '{}' has {} partitions",
                args.topic,
                topic.partitions.len()
            );
        }
        ps
    };
    let target = args.to.target()?;
    let starts = list_offsets(cluster, &mut topic, &partitions, OFFSET_EARLIEST).await?;
    let ends = list_offsets(cluster, &mut topic, &partitions, OFFSET_LATEST).await?;
    let at_time = match target {
        ResetTarget::Timestamp(ms) => list_offsets(cluster, &mut topic, &partitions, ms).await?,
        _ => BTreeMap::new(),
    };
    let mut plan = BTreeMap::new();
    for p in &partitions {
        let (Some(start), Some(end)) = (starts.get(p), ends.get(p)) else {
            bail!("no offsets found for {}-{p}", args.topic);
        };
        plan.insert(
            *p,
            plan_offset(target, *start, *end, at_time.get(p).copied()),
        );
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|(p, o)| vec![args.topic.clone(), p.to_string(), o.to_string()])
        .collect();
    write_stdout(format_table(&["TOPIC", "PARTITION", "NEW-OFFSET"], &rows).as_bytes())?;
    if args.dry_run {
        eprintln!("dry run: nothing committed");
        return Ok(());
    }
    match group_admin::commit_offsets(cluster, group, &args.topic, &plan).await {
        Ok(()) => {}
        // The group gained members since it was described.
        Err(e)
            if matches!(
                e.kafka_code(),
                Some(code::UNKNOWN_MEMBER_ID | code::ILLEGAL_GENERATION)
            ) =>
        {
            bail!("group '{group}' has active members; stop them before resetting its offsets")
        }
        Err(e) => return Err(e.into()),
    }
    eprintln!(
        "committed {} offsets of '{}' for group '{group}'",
        plan.len(),
        args.topic
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: GroupsCmd,
    }

    fn parse(args: &[&str]) -> Result<GroupsCmd, clap::Error> {
        TestCli::try_parse_from(std::iter::once("groups").chain(args.iter().copied()))
            .map(|c| c.cmd)
    }

    #[test]
    fn offsets_clamp_into_the_log() {
        assert_eq!(clamp_offset(5, 10, 20), 10);
        assert_eq!(clamp_offset(15, 10, 20), 15);
        assert_eq!(clamp_offset(25, 10, 20), 20);
        assert_eq!(clamp_offset(0, 0, 0), 0);
        assert_eq!(
            clamp_offset(7, 10, 8),
            10,
            "an end below the start counts as the start"
        );
        assert_eq!(plan_offset(ResetTarget::Earliest, 3, 9, None), 3);
        assert_eq!(plan_offset(ResetTarget::Latest, 3, 9, None), 9);
        assert_eq!(plan_offset(ResetTarget::Offset(100), 3, 9, None), 9);
        assert_eq!(plan_offset(ResetTarget::Offset(1), 3, 9, None), 3);
        assert_eq!(plan_offset(ResetTarget::Offset(4), 3, 9, None), 4);
        assert_eq!(plan_offset(ResetTarget::Timestamp(1), 3, 9, Some(5)), 5);
        assert_eq!(plan_offset(ResetTarget::Timestamp(1), 3, 9, Some(-1)), 9);
        assert_eq!(plan_offset(ResetTarget::Timestamp(1), 3, 9, None), 9);
    }

    #[test]
    fn reset_needs_exactly_one_target() {
        let GroupsCmd::ResetOffsets(a) = parse(&[
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-offset",
            "5",
            "--partition",
            "1",
            "--partition",
            "0",
            "--dry-run",
        ])
        .unwrap() else {
            panic!("not reset-offsets")
        };
        assert_eq!(a.to.target().unwrap(), ResetTarget::Offset(5));
        assert_eq!((a.partitions, a.dry_run), (vec![1, 0], true));
        let GroupsCmd::ResetOffsets(a) = parse(&[
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-datetime",
            "1970-01-01T00:00:01Z",
        ])
        .unwrap() else {
            panic!("not reset-offsets")
        };
        assert_eq!(a.to.target().unwrap(), ResetTarget::Timestamp(1000));
        assert!(
            parse(&["reset-offsets", "g", "--topic", "t"]).is_err(),
            "no target"
        );
        assert!(parse(&[
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--to-latest"
        ])
        .is_err());
        assert!(
            parse(&["reset-offsets", "g", "--to-earliest"]).is_err(),
            "no topic"
        );
        assert!(parse(&["reset-offsets", "g", "--topic", "t", "--to-offset", "-1"]).is_err());
        let err = parse(&[
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-datetime",
            "yesterday",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("ISO 8601"), "{err}");
        assert!(parse(&["describe", ""]).is_err(), "empty group id");
        assert!(matches!(parse(&["list"]).unwrap(), GroupsCmd::List));
    }
}
