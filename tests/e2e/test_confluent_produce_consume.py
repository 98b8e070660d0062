"""confluent-kafka (bundled librdkafka 2.x) producer and consumer against skein.

Kafka behaviour asserted here:
- Produce with acks=all and the idempotent producer (InitProducerId, sequence numbers)
  succeeds for every compression.type; every delivery report is error-free; the
  offsets handed back are dense 0..N-1 in produce order.
- Fetch (consumer with assign() at OFFSET_BEGINNING, group.id set, no commits) returns
  every record with key, value, headers (including null header values and repeated
  header keys), null keys / null values, and CreateTime timestamps exactly as produced.
- Batches are stored with the codec they were produced with.
- Several partitions: a record produced to partition p is read from partition p.
"""

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME
from confluent_kafka.admin import AdminClient, NewTopic

from helpers import recent_base_ts, COMMON, DeliveryLog, consume_exact, flush_all, producer, unique_topic
from storage import stored_batches

# Explicit CreateTime timestamps, an hour in the past: recent enough that the default
# retention.ms (7 days) keeps them (Kafka deletes segments whose newest timestamp is
# older than retention.ms, so fixed dates from years ago would be deleted).
BASE_TS = recent_base_ts()


def make_records(n, tag):
    recs = []
    for i in range(n):
        if i % 97 == 5:
            key = None  # null key
        elif i % 97 == 6:
            key = b""  # empty (not null) key
        else:
            key = f"{tag}-key-{i % 13}".encode()
        if i % 101 == 7:
            value = None  # null value (a tombstone)
        elif i % 101 == 8:
            value = b""
        else:
            value = (f"{tag} value {i} ".encode() + bytes(range(256)) * (1 + i % 3))
        headers = [("seq", str(i).encode()), ("tag", tag.encode())]
        if i % 10 == 0:
            headers.append(("nullhdr", None))  # header with a null value
        if i % 10 == 1:
            headers += [("dup", b"a"), ("dup", b"b")]  # repeated header keys, order kept
        ts = BASE_TS + i * 7
        recs.append((key, value, headers, ts))
    return recs


def produce_all(bootstrap, topic, recs, partition=0, **conf):
    dl = DeliveryLog()
    p = producer(bootstrap, **conf)
    for key, value, headers, ts in recs:
        while True:
            try:
                p.produce(topic, key=key, value=value, headers=headers, timestamp=ts,
                          partition=partition, on_delivery=dl)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    flush_all(p, 60)
    return dl


def check_delivery(dl, recs, base_offset=0):
    errs = dl.errors()
    assert not errs, f"{len(errs)} delivery error(s), first: {errs[0]['err']}"
    assert len(dl.reports) == len(recs)
    # Kafka: offsets in a partition are dense and follow produce order (idempotent
    # producer keeps order even with 5 requests in flight).
    offsets = [r["offset"] for r in dl.reports]
    assert offsets == list(range(base_offset, base_offset + len(recs))), (
        f"delivery offsets not dense/in order: first 20 = {offsets[:20]}"
    )
    for r, (key, value, _h, _ts) in zip(dl.reports, recs):
        assert (r["key"], r["value"]) == (key, value)


def norm_headers(h):
    return [(k, v) for k, v in (h or [])]


def check_messages(msgs, recs, topic, partition=0, base_offset=0):
    assert len(msgs) == len(recs)
    for i, (m, (key, value, headers, ts)) in enumerate(zip(msgs, recs)):
        where = f"{topic}[{partition}] offset {base_offset + i}"
        assert m.topic() == topic and m.partition() == partition, where
        assert m.offset() == base_offset + i, f"{where}: got offset {m.offset()}"
        assert m.key() == key, f"{where}: key {m.key()!r} != {key!r}"
        assert m.value() == value, f"{where}: value differs (len {len(m.value() or b'')} vs {len(value or b'')})"
        assert norm_headers(m.headers()) == headers, f"{where}: headers {m.headers()!r} != {headers!r}"
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, ts), f"{where}: timestamp {m.timestamp()} != CreateTime {ts}"


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume_codec(broker, codec):
    topic = unique_topic(f"ck-{codec}")
    recs = make_records(3000, codec)
    dl = produce_all(
        broker.bootstrap, topic, recs,
        **{"compression.type": codec, "acks": "all", "enable.idempotence": True, "linger.ms": 20},
    )
    check_delivery(dl, recs)
    msgs = consume_exact(broker.bootstrap, topic, 0, len(recs))
    check_messages(msgs, recs, topic)
    # Stored as produced: every batch on disk carries the producer's codec and the
    # producer id from InitProducerId (idempotent batches keep their producer id).
    batches = stored_batches(broker.data_dir, topic, 0)
    assert {b["codec"] for b in batches} == {codec}, [b["codec"] for b in batches]
    assert sum(b["count"] for b in batches) == len(recs)
    assert all(b["producer_id"] >= 0 for b in batches), "idempotent batches stored without a producer id"


def test_acks_variants(broker):
    # Kafka: acks=0, acks=1 and acks=all all store the records; acks=1/all report offsets.
    for acks in ("0", "1", "all"):
        topic = unique_topic(f"ck-acks{acks}")
        recs = make_records(300, f"acks{acks}")
        dl = produce_all(broker.bootstrap, topic, recs, acks=acks, **{"enable.idempotence": False})
        assert not dl.errors(), dl.errors()[:3]
        if acks != "0":
            check_delivery(dl, recs)
        msgs = consume_exact(broker.bootstrap, topic, 0, len(recs))
        check_messages(msgs, recs, topic)


def test_multi_partition(broker):
    # Kafka: explicit partitions are kept; each partition has its own offsets from 0.
    topic = unique_topic("ck-multi")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **COMMON})
    fut = admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)], operation_timeout=10)
    fut[topic].result(20)
    per_part = {}
    for part in range(4):
        per_part[part] = make_records(200 + part * 50, f"p{part}")
        dl = produce_all(broker.bootstrap, topic, per_part[part], partition=part,
                         acks="all", **{"enable.idempotence": True, "compression.type": "lz4"})
        check_delivery(dl, per_part[part])
        assert {r["partition"] for r in dl.reports} == {part}
    for part, recs in per_part.items():
        msgs = consume_exact(broker.bootstrap, topic, part, len(recs))
        check_messages(msgs, recs, topic, partition=part)


def test_large_records(broker):
    # Kafka: records up to max.message.bytes (default ~1 MiB) are accepted.
    topic = unique_topic("ck-large")
    recs = [(b"big", bytes([i % 256]) * (900 * 1024), [("i", str(i).encode())], BASE_TS + i) for i in range(5)]
    dl = produce_all(broker.bootstrap, topic, recs, acks="all", **{"enable.idempotence": True})
    check_delivery(dl, recs)
    msgs = consume_exact(broker.bootstrap, topic, 0, len(recs))
    check_messages(msgs, recs, topic)
