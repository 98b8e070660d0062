"""DeleteRecords (AdminClient.delete_records, kafka-python's, and `skein topics delete-records`).

Kafka behaviour asserted here:
- Deleting below an offset moves the partition's log start (the low watermark answered):
  ListOffsets earliest says it, a fetch below it is OFFSET_OUT_OF_RANGE, reading from the
  beginning starts there; segments wholly below it are removed.
- -1 means the high watermark; an offset past the high watermark is OFFSET_OUT_OF_RANGE;
  a compact-only topic is POLICY_VIOLATION (skein also refuses internal topics, as Kafka).
- The log start survives a restart, and the followers of a replicated partition follow it.
"""

import os
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KpTopicPartition

from conftest import skein_bin
from helpers import consumer, flush_all, producer, unique_topic


def produce(bootstrap, topic, partition, n):
    # Batches well under the topics' 2 KiB segments.
    p = producer(bootstrap, **{"linger.ms": 0, "batch.size": 1000})
    errors = []
    for i in range(n):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=partition,
                  on_delivery=lambda err, msg: err and errors.append(err))
    flush_all(p)
    assert not errors, errors[:3]


def watermarks(bootstrap, topic, partition):
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def first_offset_from_beginning(bootstrap, topic, partition):
    c = consumer(bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, partition, -2)])  # OFFSET_BEGINNING
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                return m.offset()
        raise AssertionError("nothing read from the beginning")
    finally:
        c.close()


def delete(admin, topic, partition, offset):
    fs = admin.delete_records([TopicPartition(topic, partition, offset)])
    return list(fs.values())[0].result(20)


def test_delete_records_moves_the_log_start(broker_factory):
    b = broker_factory().start()
    topic = unique_topic("delrec")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1, config={"segment.bytes": "2048"})])[topic].result(20)
    produce(b.bootstrap, topic, 0, 200)
    produce(b.bootstrap, topic, 1, 10)
    part_dir = os.path.join(b.data_dir, f"{topic}-0")
    bases = sorted(int(f[:-4]) for f in os.listdir(part_dir) if f.endswith(".log"))
    segments_before = len(bases)
    # Past the first segment, so that segment goes.
    cut, cut2 = bases[1] + 5, bases[1] + 15

    assert delete(admin, topic, 0, cut).low_watermark == cut
    assert watermarks(b.bootstrap, topic, 0) == (cut, 200)
    assert first_offset_from_beginning(b.bootstrap, topic, 0) == cut
    assert len([f for f in os.listdir(part_dir) if f.endswith(".log")]) < segments_before
    # Below the log start: out of range.
    c = consumer(b.bootstrap)
    c.assign([TopicPartition(topic, 0, 5)])
    deadline, err = time.monotonic() + 20, None
    while err is None and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() and m.error().code() != KafkaError._PARTITION_EOF:
            err = m.error()
    c.close()
    assert err is not None and err.code() in (KafkaError.OFFSET_OUT_OF_RANGE,
                                              KafkaError._AUTO_OFFSET_RESET), err
    # Never back; past the high watermark is out of range; -1 is the high watermark.
    assert delete(admin, topic, 0, 50).low_watermark == cut
    with pytest.raises(KafkaException) as e:
        delete(admin, topic, 0, 201)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    # kafka-python's admin client too.
    kp = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    out = kp.delete_records({KpTopicPartition(topic, 0): cut2})
    kp.close()
    assert list(out.values())[0]["low_watermark"] == cut2
    # The CLI, -1 (everything) on partition 1.
    r = subprocess.run([skein_bin(), "--bootstrap", b.bootstrap, "topics", "delete-records", topic,
                        "--offset", "-1", "--partition", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"partition: {topic}-1\tlow_watermark: 10" in r.stdout, r.stdout
    assert watermarks(b.bootstrap, topic, 1) == (10, 10)

    b.restart()
    assert watermarks(b.bootstrap, topic, 0) == (cut2, 200)
    assert first_offset_from_beginning(b.bootstrap, topic, 0) == cut2


def test_delete_records_refusals(broker_factory):
    b = broker_factory().start()
    topic = unique_topic("delrec-compact")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})])[topic].result(20)
    p = producer(b.bootstrap)
    p.produce(topic, key=b"k", value=b"v")
    flush_all(p)
    with pytest.raises(KafkaException) as e:
        delete(admin, topic, 0, 1)
    assert e.value.args[0].code() == KafkaError.POLICY_VIOLATION
    with pytest.raises(KafkaException) as e:
        delete(admin, "no-such-topic-here", 0, 1)
    # librdkafka finds no leader for it before asking.
    assert e.value.args[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._NOENT)


def test_followers_follow_the_leaders_log_start(cluster_factory):
    nodes = cluster_factory(3)
    bootstrap = nodes[0].bootstrap
    topic = unique_topic("delrec-rf3")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 3, config={"segment.bytes": "2048"})])[topic].result(30)
    produce(bootstrap, topic, 0, 200)
    assert delete(admin, topic, 0, 100).low_watermark == 100
    produce(bootstrap, topic, 0, 5)  # followers learn the log start from their next fetches
    deadline = time.monotonic() + 30
    for n in nodes:
        path = os.path.join(n.data_dir, f"{topic}-0", "log-start-offset-checkpoint")
        while not (os.path.exists(path) and open(path).read().split() == ["0", "100"]):
            assert time.monotonic() < deadline, f"node {n.node_id}: no log start 100"
            time.sleep(0.2)
