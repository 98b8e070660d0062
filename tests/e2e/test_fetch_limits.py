"""Fetch response size limits (KIP-74) with records close to a consumer's whole fetch limit.

Kafka behaviour asserted here:
- A Fetch response holds at most the request's max_bytes (the client's fetch.max.bytes) of
  records, whatever max.partition.fetch.bytes allows; only the first batch of the first
  non-empty partition may exceed it. A confluent-kafka consumer with fetch.max.bytes=1000000,
  max.partition.fetch.bytes=20000000 and receive.message.max.bytes=1000512 (librdkafka's
  floor, fetch.max.bytes + 512) reads three partitions of 900 KiB records to the end (a
  regression test: skein once sent such a consumer a multi-megabyte response, which it
  dropped as "Invalid response size" and asked for again, forever).
- kafka-python with the same small fetch_max_bytes reads them too.
"""

import hashlib
import time

from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from helpers import consumer, flush_all, producer, unique_topic

PARTS = 3
PER_PART = 4
RECORD_BYTES = 900 * 1024  # under the broker's and librdkafka's 1 MB message limits
FETCH_MAX_BYTES = 1_000_000
PARTITION_FETCH_MAX_BYTES = 20_000_000
READ_TIMEOUT = 60.0


def value(p, i):
    seed = hashlib.sha256(f"{p}-{i}".encode()).digest()
    return (seed * (RECORD_BYTES // len(seed) + 1))[:RECORD_BYTES]


def produce_large(bootstrap):
    """A 3-partition topic holding PER_PART records of 900 KiB in each partition."""
    topic = unique_topic("fetch-limits")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTS, 1)])[topic].result(30)
    p = producer(bootstrap, acks="all", **{"linger.ms": 5})
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(str(err))

    for i in range(PER_PART):
        for q in range(PARTS):
            p.produce(topic, value=value(q, i), partition=q, on_delivery=on_delivery)
            p.poll(0)
    flush_all(p, timeout=60)
    assert not failed, f"{len(failed)} deliveries failed, first: {failed[0]}"
    return topic


def check_all(got, who):
    assert len(got) == PARTS * PER_PART, (
        f"{who}: read {len(got)} of {PARTS * PER_PART} records within {READ_TIMEOUT}s: "
        f"{sorted(got)}"
    )
    for q in range(PARTS):
        for i in range(PER_PART):
            assert got[(q, i)] == value(q, i), f"{who}: record {i} of partition {q} differs"


def test_confluent_consumer_with_small_fetch_max_bytes_reads_large_records(broker):
    topic = produce_large(broker.bootstrap)
    c = consumer(
        broker.bootstrap,
        **{
            "fetch.max.bytes": FETCH_MAX_BYTES,
            "max.partition.fetch.bytes": PARTITION_FETCH_MAX_BYTES,
            "receive.message.max.bytes": FETCH_MAX_BYTES + 512,
        },
    )
    got, errors = {}, []
    try:
        c.assign([TopicPartition(topic, q, 0) for q in range(PARTS)])
        deadline = time.monotonic() + READ_TIMEOUT
        while len(got) < PARTS * PER_PART and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    errors.append(str(m.error()))
                continue
            got[(m.partition(), m.offset())] = m.value()
    finally:
        c.close()
    check_all(got, f"confluent-kafka (client errors: {errors[:3]})")
    assert not errors, f"consumer errors: {errors[:5]}"


def test_kafka_python_consumer_with_small_fetch_max_bytes_reads_large_records(broker):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition

    topic = produce_large(broker.bootstrap)
    c = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=20000,
        fetch_max_wait_ms=100,
        fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_MAX_BYTES,
    )
    got = {}
    try:
        tps = [KTopicPartition(topic, q) for q in range(PARTS)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        deadline = time.monotonic() + READ_TIMEOUT
        while len(got) < PARTS * PER_PART and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                for r in recs:
                    got[(r.partition, r.offset)] = r.value
    finally:
        c.close()
    check_all(got, "kafka-python")
