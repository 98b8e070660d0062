//! Produces a few keyed records to a topic and reads them back.
//!
//! `cargo run -p skein-client --example produce_and_read -- HOST:PORT TOPIC [COUNT]`
//! (the topic must exist; COUNT defaults to 3).

use std::time::{Duration, Instant};

use bytes::Bytes;
use skein_client::{Cluster, Consumer, Producer, ProducerConfig, ProducerRecord};

/// How long to wait for the records to come back.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("produce_and_read: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(bootstrap), Some(topic)) = (args.next(), args.next()) else {
        return Err("usage: produce_and_read HOST:PORT TOPIC [COUNT]".into());
    };
    let count: usize = args.next().map_or(Ok(3), |c| c.parse())?;

    // Start reading at the current end, so only this run's records come back.
    let mut consumer = Consumer::new(Cluster::connect(&bootstrap).await?, &topic, None).await?;
    consumer.seek_to_end().await?;

    let cluster = Cluster::connect(&bootstrap).await?;
    let mut producer = Producer::new(cluster, &topic, ProducerConfig::default()).await?;
    for i in 0..count {
        producer.add(ProducerRecord {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Bytes::from(format!("value-{i}")),
        });
    }
    producer.flush().await?;
    println!("produced {} records (acks=all)", producer.produced());

    let deadline = Instant::now() + READ_TIMEOUT;
    let mut records = Vec::new();
    while records.len() < count && Instant::now() < deadline {
        consumer
            .poll(Duration::from_millis(500), &mut records)
            .await?;
    }
    let show =
        |b: &Option<Bytes>| String::from_utf8_lossy(b.as_deref().unwrap_or(b"null")).into_owned();
    for r in &records {
        println!(
            "{topic}-{} offset {}: {} = {}",
            r.partition,
            r.offset,
            show(&r.key),
            show(&r.value)
        );
    }
    if records.len() < count {
        return Err(format!("read {} of {count} records", records.len()).into());
    }
    Ok(())
}
