"""Log compaction with real clients (cleanup.policy=compact).

Kafka behaviour asserted here:
- After the cleaner runs, a consumer reading from the beginning sees, for every key, the newest
  value produced (tombstoned keys disappear once delete.retention.ms has passed), each record at
  the offset it was produced at; the cleaned log has gaps, and confluent-kafka (librdkafka) and
  kafka-python both read across them.
- The partition's data directory shrinks.
- A `kill -9` and restart keep the cleaned log as it was, and more updates are cleaned again.
"""

import os
import time

from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

from helpers import consumer, flush_all, producer, unique_topic

KEYS = 40
TOMBSTONED = {f"key-{i}" for i in range(5)}

TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.bytes": "16384",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "0",
}


def start_broker(broker_factory):
    return broker_factory(extra_args=["--log-cleaner-backoff-ms", "200"]).start()


def create(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=TOPIC_CONFIG)])[topic].result(20)


def produce_updates(bootstrap, topic, rounds, start):
    """`rounds` values for every key, then tombstones for TOMBSTONED; returns value -> offset and
    key -> newest value (None for a tombstone)."""
    p = producer(bootstrap, **{"linger.ms": 0, "batch.size": 4000})
    offsets, newest = {}, {}

    def done(err, msg):
        assert err is None, err
        offsets[msg.value()] = msg.offset()

    for r in range(start, start + rounds):
        for k in range(KEYS):
            key, value = f"key-{k}", f"key-{k}:{r}".encode()
            p.produce(topic, key=key, value=value, on_delivery=done)
            newest[key] = value
        p.poll(0)
    for key in sorted(TOMBSTONED):
        p.produce(topic, key=key, value=None)
        newest[key] = None
    flush_all(p)
    return offsets, newest


def read_all(bootstrap, topic):
    """Every record from the log start to the high watermark: (offset, key, value)."""
    c = consumer(bootstrap)
    out = []
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
        c.assign([TopicPartition(topic, 0, lo)])
        deadline = time.monotonic() + 30
        while (not out or out[-1][0] < hi - 1) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
                continue
            assert not m.error(), m.error()
            out.append((m.offset(), m.key().decode(), m.value()))
    finally:
        c.close()
    assert out and out[-1][0] == hi - 1, f"read up to {out[-1:]} of [{lo}, {hi})"
    return out


def read_all_kafka_python(bootstrap, topic, hi):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      consumer_timeout_ms=10000)
    tp = KpTopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    out = []
    for m in c:
        out.append((m.offset, m.key.decode(), m.value))
        if m.offset >= hi - 1:
            break
    c.close()
    return out


def check_compacted(records, offsets, newest):
    """Each key once, with its newest value at the offset it was produced at (or absent once
    tombstoned); offsets increase."""
    seen = {}
    for off, key, value in records:
        if value is not None:
            assert offsets[value] == off, f"{value!r} moved from {offsets[value]} to {off}"
        seen[key] = value
    assert [o for o, _, _ in records] == sorted({o for o, _, _ in records})
    for key, value in newest.items():
        assert seen.get(key) == value, f"{key}: newest {value!r}, read {seen.get(key)!r}"


def active_base(part_dir):
    """The base offset of the partition's active segment (its newest .log file)."""
    return max(int(f[:-4]) for f in os.listdir(part_dir) if f.endswith(".log"))


def wait_cleaned(bootstrap, topic, part_dir):
    """Waits until below the active segment (all the cleaner may touch) each key appears once."""
    deadline = time.monotonic() + 60
    while True:
        base = active_base(part_dir)
        records = read_all(bootstrap, topic)
        head = [k for o, k, _ in records if o < base]
        if (base > 0 and len(head) == len(set(head))) or time.monotonic() > deadline:
            return records, base
        time.sleep(0.5)


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def test_compacted_topic_keeps_the_newest_value_of_each_key(broker_factory):
    b = start_broker(broker_factory)
    topic = unique_topic("compact")
    create(b.bootstrap, topic)
    offsets, newest = produce_updates(b.bootstrap, topic, 60, 0)
    produced = 60 * KEYS + len(TOMBSTONED)
    part_dir = os.path.join(b.data_dir, f"{topic}-0")
    size_before = dir_bytes(part_dir)
    records, base = wait_cleaned(b.bootstrap, topic, part_dir)
    head = [k for o, k, _ in records if o < base]
    assert base > 0 and len(head) == len(set(head)), f"not cleaned below {base}: {len(head)} records"
    assert len(records) < produced // 2, f"{len(records)} of {produced} records remain"
    assert records[-1][0] == produced - 1
    check_compacted(records, offsets, newest)
    assert read_all_kafka_python(b.bootstrap, topic, produced) == records
    assert dir_bytes(part_dir) < size_before / 2

    # A crash and restart keep the cleaned log; new updates are cleaned again.
    b.kill9()
    b.start()
    assert read_all(b.bootstrap, topic) == records
    more, newest2 = produce_updates(b.bootstrap, topic, 30, 60)
    offsets.update(more)
    newest.update(newest2)
    produced += 30 * KEYS + len(TOMBSTONED)
    records, base2 = wait_cleaned(b.bootstrap, topic, part_dir)
    head = [k for o, k, _ in records if o < base2]
    assert base2 > base and len(head) == len(set(head)), f"not cleaned below {base2}"
    check_compacted(records, offsets, newest)


def test_a_null_key_is_refused_on_a_compacted_topic(broker_factory):
    b = start_broker(broker_factory)
    topic = unique_topic("compact-nokey")
    create(b.bootstrap, topic)
    p = producer(b.bootstrap, **{"linger.ms": 0, "retries": 0})
    errors = []
    p.produce(topic, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    flush_all(p)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.INVALID_RECORD, errors[0]
    p.produce(topic, key=b"k", value=b"keyed", on_delivery=lambda err, msg: errors.append(err))
    flush_all(p)
    assert errors[1] is None


def test_committed_offsets_survive_compaction_of_the_offsets_topic(broker_factory):
    b = broker_factory(extra_args=[
        "--log-cleaner-backoff-ms", "200", "--offsets-topic-segment-bytes", "16384",
        "--offsets-topic-num-partitions", "1", "--offsets-topic-replication-factor", "1",
    ]).start()
    topic = unique_topic("compact-commits")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(20)
    group = unique_topic("group")
    c = consumer(b.bootstrap, **{"group.id": group})
    for i in range(1, 301):
        c.commit(offsets=[TopicPartition(topic, p, i * 10 + p) for p in range(4)],
                 asynchronous=False)
    c.close()
    part_dir = os.path.join(b.data_dir, "__consumer_offsets-0")

    def below_active():
        base = active_base(part_dir)
        return sum(os.path.getsize(os.path.join(part_dir, f)) for f in os.listdir(part_dir)
                   if f.endswith(".log") and int(f[:-4]) < base)

    # 1200 commits fill several segments; cleaned, those below the active segment hold one
    # commit per group and partition (plus the group's metadata).
    deadline = time.monotonic() + 60
    while active_base(part_dir) == 0 or below_active() > 16384 // 4:
        assert time.monotonic() < deadline, f"{below_active()} bytes below the active segment"
        time.sleep(0.5)
    b.restart()
    c = consumer(b.bootstrap, **{"group.id": group})
    got = c.committed([TopicPartition(topic, p) for p in range(4)], timeout=30)
    c.close()
    assert [tp.offset for tp in got] == [3000 + p for p in range(4)]


def test_every_replica_of_a_three_broker_cluster_cleans_its_own_log(cluster_factory):
    nodes = cluster_factory(3, extra_args=["--log-cleaner-backoff-ms", "200"])
    bootstrap = nodes[0].bootstrap
    topic = unique_topic("compact-rf3")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 3, config=TOPIC_CONFIG)])[topic].result(30)
    offsets, newest = produce_updates(bootstrap, topic, 60, 0)
    produced = 60 * KEYS + len(TOMBSTONED)
    dirs = [os.path.join(n.data_dir, f"{topic}-0") for n in nodes]

    def head_bytes(d):
        base = active_base(d)
        return base, sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
                         if f.endswith(".log") and int(f[:-4]) < base)

    # Uncleaned, the segments below the active one hold about 2 KiB per 40 records; cleaned,
    # one record per key.
    deadline = time.monotonic() + 60
    while not all(b > 0 and size < 8192 for b, size in map(head_bytes, dirs)):
        assert time.monotonic() < deadline, [head_bytes(d) for d in dirs]
        time.sleep(0.5)
    records = read_all(bootstrap, topic)
    assert records[-1][0] == produced - 1
    check_compacted(records, offsets, newest)
