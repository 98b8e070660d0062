"""kafka-python (pure Python, 3.x: idempotence on by default, its own protocol
encoders and version negotiation) against skein.

Kafka behaviour asserted here:
- ApiVersions negotiation: the client connects and picks versions from what the
  broker advertises.
- Produce (acks=all, idempotent by default in 3.x, gzip and no compression) and Fetch
  (assign + seek_to_beginning, no group): keys, values, headers and timestamps intact,
  dense offsets from 0; end_offsets/beginning_offsets (ListOffsets) agree.
- Admin: CreateTopics with partitions and configs, TOPIC_ALREADY_EXISTS on a second
  create, list_topics, describe_cluster, DeleteTopics.
"""

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from helpers import recent_base_ts, unique_topic

# Explicit CreateTime timestamps, an hour in the past: recent enough that the default
# retention.ms (7 days) keeps them (Kafka deletes segments whose newest timestamp is
# older than retention.ms, so fixed dates from years ago would be deleted).
BASE_TS = recent_base_ts()


def kp_producer(bootstrap, **kw):
    return KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=20000, max_block_ms=20000,
                         linger_ms=5, **kw)


def kp_consume(bootstrap, topic, partition, count, timeout=30):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      request_timeout_ms=20000, fetch_max_wait_ms=100)
    try:
        tp = TopicPartition(topic, partition)
        c.assign([tp])
        c.seek_to_beginning(tp)
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                out.extend(recs)
        end = c.end_offsets([tp], timeout_ms=10000)[tp]
        begin = c.beginning_offsets([tp], timeout_ms=10000)[tp]
    finally:
        c.close()
    assert len(out) == count, f"kafka-python read {len(out)} of {count} records from {topic}[{partition}]"
    return out, begin, end


@pytest.mark.parametrize("codec", [None, "gzip"])
def test_kafka_python_produce_consume(broker, codec):
    topic = unique_topic(f"kp-{codec or 'none'}")
    n = 1000
    p = kp_producer(broker.bootstrap, acks="all", compression_type=codec)
    futs = []
    for i in range(n):
        futs.append(p.send(topic, key=f"k{i % 7}".encode(), value=f"value-{i}".encode() * (1 + i % 5),
                           headers=[("i", str(i).encode()), ("h", b"")], partition=0,
                           timestamp_ms=BASE_TS + i))
    p.flush(30)
    metas = [f.get(timeout=30) for f in futs]
    p.close(10)
    assert [m.offset for m in metas] == list(range(n)), "offsets not dense from 0 in produce order"
    assert {m.partition for m in metas} == {0}

    recs, begin, end = kp_consume(broker.bootstrap, topic, 0, n)
    assert (begin, end) == (0, n)
    for i, r in enumerate(recs):
        assert r.offset == i
        assert r.key == f"k{i % 7}".encode()
        assert r.value == f"value-{i}".encode() * (1 + i % 5)
        assert list(r.headers) == [("i", str(i).encode()), ("h", b"")], r.headers
        assert r.timestamp == BASE_TS + i and r.timestamp_type == 0, (r.timestamp, r.timestamp_type)


def test_kafka_python_admin(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    try:
        topic = unique_topic("kp-admin")
        admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1,
                                     "configs": {"retention.ms": "3600000"}}})
        assert topic in admin.list_topics()
        desc = {t["name"]: t for t in admin.describe_topics([topic])}
        assert len(desc[topic]["partitions"]) == 3

        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})

        cluster = admin.describe_cluster()
        assert [(b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"]] == [(1, "127.0.0.1", broker.port)]
        assert cluster["controller_id"] == 1

        admin.delete_topics([topic])
        deadline = time.monotonic() + 10
        while topic in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert topic not in admin.list_topics(), "topic still listed after delete"
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_topics([topic])
    finally:
        admin.close()
