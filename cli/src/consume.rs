//! `skein consume TOPIC`: records read by a [`skein_client::Consumer`], printed one per line
//! until `--max-messages` or until nothing new arrived for `--idle-timeout-ms`.

use std::time::{Duration, Instant};

use anyhow::bail;
use skein_client::{Cluster, Consumer, FetchedRecord};

use crate::write_stdout;

/// `skein consume TOPIC`: print record values (optionally keys) one per line.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeArgs {
    /// Topic to consume from.
    pub topic: String,
    /// Start at the earliest offset (default: the latest, i.e. only new records).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Consume only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition", value_parser = clap::value_parser!(i64).range(0..))]
    pub offset: Option<i64>,
    /// Exit after printing this many records.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Exit (successfully) after this long with no new record.
    #[arg(long, default_value_t = 5000)]
    pub idle_timeout_ms: u64,
    /// Print KEY<SEP>VALUE instead of VALUE.
    #[arg(long)]
    pub print_key: bool,
    /// Separator between key and value for --print-key.
    #[arg(long, default_value = "\t")]
    pub key_separator: String,
}

/// Appends one record as a line: VALUE, or KEY<SEP>VALUE; absent key or value prints "null".
fn format_record(out: &mut Vec<u8>, record: &FetchedRecord, print_key: bool, separator: &str) {
    if print_key {
        out.extend_from_slice(record.key.as_deref().unwrap_or(b"null"));
        out.extend_from_slice(separator.as_bytes());
    }
    out.extend_from_slice(record.value.as_deref().unwrap_or(b"null"));
    out.push(b'\n');
}

/// Runs `skein consume` against the broker at `bootstrap` (HOST:PORT).
pub async fn run_consume(bootstrap: &str, args: ConsumeArgs) -> anyhow::Result<()> {
    if args.offset.is_some() && args.partition.is_none() {
        bail!("--offset needs --partition");
    }
    let cluster = Cluster::connect(bootstrap).await?;
    let mut consumer = Consumer::new(cluster, &args.topic, args.partition).await?;
    match (args.offset, args.partition) {
        (Some(offset), Some(partition)) => consumer.seek(partition, offset)?,
        _ if args.from_beginning => consumer.seek_to_beginning().await?,
        _ => consumer.seek_to_end().await?,
    }
    consume_loop(&mut consumer, &args).await
}

/// Polls and prints until the record limit, the idle timeout, or a closed stdout.
async fn consume_loop(consumer: &mut Consumer, args: &ConsumeArgs) -> anyhow::Result<()> {
    let idle = Duration::from_millis(args.idle_timeout_ms);
    let mut last_progress = Instant::now();
    let mut printed: u64 = 0;
    let mut records = Vec::new();
    loop {
        if args.max_messages.is_some_and(|max| printed >= max) {
            return Ok(());
        }
        let idle_left = idle.saturating_sub(last_progress.elapsed());
        if idle_left.is_zero() {
            return Ok(());
        }
        records.clear();
        let polled = consumer.poll(idle_left, &mut records).await;
        let wanted = args.max_messages.map_or(records.len(), |max| {
            usize::try_from(max - printed)
                .unwrap_or(usize::MAX)
                .min(records.len())
        });
        let mut out = Vec::new();
        for record in &records[..wanted] {
            format_record(&mut out, record, args.print_key, &args.key_separator);
        }
        printed += wanted as u64;
        if !out.is_empty() && !write_stdout(&out)? {
            return Ok(()); // stdout closed: nobody is reading any more
        }
        if wanted > 0 {
            last_progress = Instant::now();
        }
        polled?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn records_print_as_lines() {
        let mut out = Vec::new();
        let r = FetchedRecord {
            partition: 0,
            offset: 0,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
        };
        format_record(&mut out, &r, false, "\t");
        format_record(&mut out, &r, true, "\t");
        format_record(
            &mut out,
            &FetchedRecord {
                partition: 0,
                offset: 1,
                key: None,
                value: None,
            },
            true,
            ":",
        );
        assert_eq!(out, b"v\nk\tv\nnull:null\n");
    }
}
