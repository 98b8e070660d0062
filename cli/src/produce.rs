//! `skein produce TOPIC`: each line of stdin becomes one record, sent by a
//! [`skein_client::Producer`]. Lines are flushed when the producer's batch limits are
//! reached, when input pauses for the producer's linger, and at EOF.

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use skein_client::{ClientError, Cluster, Producer, ProducerConfig, ProducerRecord};

/// `skein produce TOPIC`: send each line of stdin as one record.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    pub topic: String,
    /// Split each line at the first SEP into key and value; a line without SEP is an error.
    #[arg(long, value_name = "SEP", value_parser = parse_separator)]
    pub key_separator: Option<String>,
    /// Send every record to this partition (default: murmur2 of the key like the Java
    /// client; records without a key go round-robin, one partition per batch).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Acknowledgements: -1 (all in-sync replicas; also "all"), 1 (leader) or 0 (none).
    #[arg(long, default_value = "-1", allow_negative_numbers = true, value_parser = parse_acks)]
    pub acks: i16,
    /// Idempotent producer (InitProducerId and sequence numbers). Like the Java producer's
    /// default, it is only used with --acks -1; other acks produce without it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true")]
    pub idempotent: bool,
}

fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("acks must be -1 (all), 0 or 1, got '{s}'")),
    }
}

fn parse_separator(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("the key separator must not be empty".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// Splits a line (without its end-of-line) into key and value.
fn parse_line(
    line: &[u8],
    key_separator: Option<&str>,
    line_number: u64,
) -> anyhow::Result<ProducerRecord> {
    let Some(sep) = key_separator else {
        return Ok(ProducerRecord {
            key: None,
            value: Bytes::copy_from_slice(line),
        });
    };
    let sep = sep.as_bytes();
    let at = line
        .windows(sep.len())
        .position(|w| w == sep)
        .ok_or_else(|| {
            anyhow!(
                "no key separator '{}' on line {line_number}: '{}'",
                String::from_utf8_lossy(sep),
                String::from_utf8_lossy(line)
            )
        })?;
    Ok(ProducerRecord {
        key: Some(Bytes::copy_from_slice(&line[..at])),
        value: Bytes::copy_from_slice(&line[at + sep.len()..]),
    })
}

/// Strips "\n", "\r\n" (or a lone trailing "\r") like Java's `BufferedReader.readLine`.
fn strip_line_end(mut line: &[u8]) -> &[u8] {
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest;
    }
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Runs `skein produce` against the broker at `bootstrap` (HOST:PORT).
pub async fn run_produce(bootstrap: &str, args: ProduceArgs) -> anyhow::Result<()> {
    let cluster = Cluster::connect(bootstrap).await?;
    let config = ProducerConfig {
        acks: args.acks,
        idempotent: args.idempotent,
        partition: args.partition,
        ..ProducerConfig::default()
    };
    let mut producer = match Producer::new(cluster, &args.topic, config).await {
        Ok(p) => p,
        Err(e @ ClientError::NotSupported { .. }) => bail!("{e}; pass --idempotent false"),
        Err(e) => return Err(e.into()),
    };
    read_and_produce(&mut producer, args.key_separator.as_deref()).await?;
    let acked = if args.acks == 0 {
        " (acks=0: not confirmed)"
    } else {
        ""
    };
    eprintln!(
        "{} records produced to '{}'{acked}",
        producer.produced(),
        producer.topic().name
    );
    Ok(())
}

/// Lines of stdin in flight between the reading thread and the producer.
const STDIN_LINES_QUEUED_MAX: usize = 1024;

/// Reads stdin on a plain thread and hands lines over a bounded channel.
///
/// Not `tokio::io::stdin`: its blocking read cannot be cancelled, so after an error the
/// runtime's shutdown would hang until the user pressed enter. A plain thread simply dies
/// with the process.
fn spawn_stdin_reader() -> tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(STDIN_LINES_QUEUED_MAX);
    std::thread::Builder::new()
        .name("skein-stdin".to_owned())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut line = Vec::new();
                let item = match std::io::BufRead::read_until(&mut stdin, b'\n', &mut line) {
                    Ok(0) => return, // EOF: dropping `tx` tells the producer
                    Ok(_) => Ok(line),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return; // the producer stopped, or reading failed
                }
            }
        })
        .expect("spawning the stdin reader thread");
    rx
}

/// Reads stdin line by line, flushing on size, on EOF, and when input pauses.
async fn read_and_produce(
    producer: &mut Producer,
    key_separator: Option<&str>,
) -> anyhow::Result<()> {
    let mut lines = spawn_stdin_reader();
    let mut line_number: u64 = 0;
    let linger = producer.linger();
    loop {
        let next = if !producer.has_pending() {
            Some(lines.recv().await)
        } else {
            // Input paused with records pending: send them rather than hold them back.
            tokio::time::timeout(linger, lines.recv()).await.ok()
        };
        let line = match next {
            None => {
                producer.flush().await?;
                continue;
            }
            Some(None) => break, // EOF
            Some(Some(line)) => line.context("reading stdin")?,
        };
        line_number += 1;
        let record = parse_line(strip_line_end(&line), key_separator, line_number)?;
        producer.add(record);
        if producer.is_full() {
            producer.flush().await?;
        }
    }
    producer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_into_key_and_value() {
        assert_eq!(strip_line_end(b"a\r\n"), b"a");
        assert_eq!(strip_line_end(b"a\n"), b"a");
        assert_eq!(strip_line_end(b"a"), b"a");
        assert_eq!(strip_line_end(b"\n"), b"");
        let r = parse_line(b"k1::v::1", Some("::"), 1).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(&r.value[..], b"v::1");
        let r = parse_line(b"plain", None, 1).unwrap();
        assert_eq!((r.key, &r.value[..]), (None, &b"plain"[..]));
        let err = parse_line(b"nokey", Some("\t"), 7).unwrap_err().to_string();
        assert!(err.contains("line 7"), "{err}");
    }
}
