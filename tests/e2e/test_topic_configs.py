"""Topic configs that change what the broker stores or serves.

Kafka behaviour asserted here:
- retention.ms: segments whose newest record timestamp is older than retention.ms are
  deleted whole; the log start offset (low watermark, ListOffsets EARLIEST) advances;
  newer records stay intact; a fetch below the log start -> OFFSET_OUT_OF_RANGE.
- retention.bytes: the oldest segments go once the log is over the limit.
- message.timestamp.type=LogAppendTime: the broker stamps records with its own clock
  and the consumer sees timestamp type LogAppendTime.
- max.message.bytes: a larger batch -> MESSAGE_TOO_LARGE; smaller ones are accepted.
- compression.type: a codec other than `producer` makes the leader store every batch with that
  codec (recompressing what producers sent with another); consumers read the same records.
"""

import time

import pytest

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from helpers import COMMON, DeliveryLog, consume_exact, consumer, flush_all, producer, unique_topic
from storage import stored_batches

RETENTION_ARGS = ["--log-retention-check-interval-ms", "300"]


def create_topic(bootstrap, topic, config, partitions=1):
    admin = AdminClient({"bootstrap.servers": bootstrap, **COMMON})
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config)],
                              operation_timeout=10)[topic]
    fut.result(20)


def watermarks(bootstrap, topic, partition=0):
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def produce_small_batches(bootstrap, topic, values, ts, first_key=0):
    """Each value in its own small batch (so segments roll at small segment.bytes)."""
    dl = DeliveryLog()
    p = producer(bootstrap, acks="all", **{"linger.ms": 0, "batch.num.messages": 1})
    for i, v in enumerate(values):
        p.produce(topic, key=str(first_key + i).encode(), value=v, partition=0, timestamp=ts, on_delivery=dl)
        if i % 20 == 19:
            flush_all(p)
    flush_all(p)
    assert not dl.errors(), [str(r["err"]) for r in dl.errors()[:3]]
    return dl


def test_retention_ms_deletes_old_segments(broker_factory):
    b = broker_factory(extra_args=RETENTION_ARGS).start()
    topic = unique_topic("ret-ms")
    create_topic(b.bootstrap, topic, {"retention.ms": "3600000", "segment.bytes": "8192"})
    now_ms = int(time.time() * 1000)
    old = produce_small_batches(b.bootstrap, topic, [b"o" * 400] * 200, now_ms - 2 * 86_400_000)
    new = produce_small_batches(b.bootstrap, topic, [b"n" * 400] * 50, now_ms, first_key=200)
    assert new.reports[0]["offset"] == 200 and old.reports[-1]["offset"] == 199

    deadline = time.monotonic() + 20
    lo, hi = watermarks(b.bootstrap, topic)
    while lo == 0 and time.monotonic() < deadline:
        time.sleep(0.3)
        lo, hi = watermarks(b.bootstrap, topic)
    assert hi == 250, f"high watermark {hi}, expected 250"
    assert 0 < lo <= 200, f"log start offset {lo}: retention.ms did not delete the 2-day-old segments"

    # Everything from the log start on is intact; all new records survive.
    msgs = consume_exact(b.bootstrap, topic, 0, hi - lo, start=lo)
    assert [int(m.key()) for m in msgs] == list(range(lo, 250))

    # A fetch below the log start offset.
    c = consumer(b.bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        err = None
        deadline = time.monotonic() + 20
        while err is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error(), f"fetch at 0 below log start {lo} returned offset {m.offset()}"
            err = m.error()
        assert err is not None, "no error for a fetch below the log start offset"
        assert err.code() in (KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET), err
    finally:
        c.close()

    # Survives a restart.
    assert b.restart() == 0
    assert watermarks(b.bootstrap, topic) == (lo, 250)


def test_retention_bytes(broker_factory):
    b = broker_factory(extra_args=RETENTION_ARGS).start()
    topic = unique_topic("ret-bytes")
    create_topic(b.bootstrap, topic, {"retention.bytes": "20000", "segment.bytes": "8192"})
    produce_small_batches(b.bootstrap, topic, [b"b" * 400] * 300, int(time.time() * 1000))
    deadline = time.monotonic() + 20
    lo, hi = watermarks(b.bootstrap, topic)
    while lo == 0 and time.monotonic() < deadline:
        time.sleep(0.3)
        lo, hi = watermarks(b.bootstrap, topic)
    assert hi == 300
    assert lo > 0, "retention.bytes=20000 did not delete any of ~150 KB of segments"
    # What is left is at least retention.bytes worth of the newest records (~470 B each).
    assert hi - lo >= 20000 // 600, f"retention.bytes deleted too much: {hi - lo} records left"
    msgs = consume_exact(b.bootstrap, topic, 0, hi - lo, start=lo)
    assert [int(m.key()) for m in msgs] == list(range(lo, 300))


def test_log_append_time(broker):
    topic = unique_topic("lat")
    create_topic(broker.bootstrap, topic, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    p = producer(broker.bootstrap, acks="all")
    for i in range(20):
        p.produce(topic, value=f"v{i}".encode(), partition=0, timestamp=1_000_000_000_000 + i)
    flush_all(p)
    after = int(time.time() * 1000)
    msgs = consume_exact(broker.bootstrap, topic, 0, 20)
    for m in msgs:
        ts_type, ts = m.timestamp()
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME, f"timestamp type {ts_type}, expected LogAppendTime"
        assert before - 1000 <= ts <= after + 1000, f"LogAppendTime {ts} not between {before} and {after}"
    assert [m.value() for m in msgs] == [f"v{i}".encode() for i in range(20)]


def test_max_message_bytes(broker):
    topic = unique_topic("maxmsg")
    create_topic(broker.bootstrap, topic, {"max.message.bytes": "10000"})
    dl = DeliveryLog()
    # The client's own limit is higher, so the broker is the one that refuses.
    p = producer(broker.bootstrap, acks="all", **{"linger.ms": 0})
    p.produce(topic, value=b"s" * 1000, partition=0, on_delivery=dl)
    flush_all(p)
    p.produce(topic, value=b"L" * 50_000, partition=0, on_delivery=dl)
    flush_all(p)
    p.produce(topic, value=b"s" * 2000, partition=0, on_delivery=dl)
    flush_all(p)
    errs = [r["err"] for r in dl.reports]
    assert errs[0] is None and errs[2] is None, errs
    assert errs[1] is not None and errs[1].code() == KafkaError.MSG_SIZE_TOO_LARGE, (
        f"50 KB record on max.message.bytes=10000: {errs[1]}, expected MESSAGE_TOO_LARGE"
    )
    assert [r["offset"] for r in dl.reports if r["err"] is None] == [0, 1]
    msgs = consume_exact(broker.bootstrap, topic, 0, 2)
    assert [len(m.value()) for m in msgs] == [1000, 2000]


def test_retention_empties_the_log(broker_factory):
    # Kafka: when every record is past retention.ms, even the active segment goes (a new
    # empty one is rolled at the same offset); the log start and end offsets are then
    # equal and new records continue from there.
    b = broker_factory(extra_args=RETENTION_ARGS).start()
    topic = unique_topic("ret-all")
    create_topic(b.bootstrap, topic, {"retention.ms": "3600000"})
    produce_small_batches(b.bootstrap, topic, [b"x" * 100] * 50, int(time.time() * 1000) - 86_400_000)
    deadline = time.monotonic() + 20
    lo, hi = watermarks(b.bootstrap, topic)
    while lo < 50 and time.monotonic() < deadline:
        time.sleep(0.3)
        lo, hi = watermarks(b.bootstrap, topic)
    assert (lo, hi) == (50, 50), f"watermarks {(lo, hi)} after all records expired, expected (50, 50)"
    dl = produce_small_batches(b.bootstrap, topic, [b"fresh"] * 5, int(time.time() * 1000), first_key=50)
    assert [r["offset"] for r in dl.reports] == [50, 51, 52, 53, 54]
    msgs = consume_exact(b.bootstrap, topic, 0, 5, start=50)
    assert [m.value() for m in msgs] == [b"fresh"] * 5
    assert b.restart() == 0
    assert watermarks(b.bootstrap, topic) == (50, 55)
    b.assert_alive()


def test_kafka_topic_configs_without_a_mechanism_are_accepted(broker):
    """Every topic config Kafka 4 documents is accepted when its value is valid; those skein
    has no mechanism for are shown with Kafka's defaults and change nothing, and a value that
    would ask for a missing mechanism is refused with INVALID_CONFIG."""
    from confluent_kafka.admin import ConfigResource

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = unique_topic("accepted-configs")
    configs = {"compression.type": "producer", "flush.ms": "1000", "preallocate": "true",
               "segment.jitter.ms": "10", "file.delete.delay.ms": "0",
               "leader.replication.throttled.replicas": "0:1", "segment.index.bytes": "4096"}
    admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic].result(20)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = list(admin.describe_configs([res]).values())[0].result(20)
    for k, v in configs.items():
        assert entries[k].value == v and not entries[k].is_default, (k, entries[k])
    assert entries["compression.zstd.level"].value == "3" and entries["compression.zstd.level"].is_default
    assert entries["remote.storage.enable"].value == "false"
    for bad in ({"compression.type": "brotli"}, {"remote.storage.enable": "true"},
                {"flush.messages": "0"}, {"compression.gzip.level": "12"}):
        name = unique_topic("refused-config")
        fs = admin.create_topics([NewTopic(name, 1, 1, config=bad)])
        try:
            fs[name].result(20)
            raise AssertionError(f"{bad} must be refused")
        except Exception as e:  # KafkaException carrying INVALID_CONFIG
            assert "INVALID_CONFIG" in str(e) or "must be" in str(e) or "not supported" in str(e), e


@pytest.mark.parametrize("target", ["gzip", "snappy", "lz4", "zstd", "uncompressed"])
def test_compression_type_recompresses(broker, target):
    """compression.type=<codec>: batches sent uncompressed and with other codecs are stored
    with the topic's codec, and a consumer from the start reads every record (key, value,
    headers, timestamp) as sent (librdkafka reads snappy in Kafka's xerial framing); kafka-python
    reads the gzip and uncompressed ones too."""
    topic = unique_topic(f"recompress-{target}")
    create_topic(broker.bootstrap, topic, {"compression.type": target, "compression.zstd.level": "5"})
    sent = []
    for codec in ("none", "gzip", "lz4", "zstd", "snappy"):
        p = producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 20,
                                          "acks": "all", "enable.idempotence": True})
        for i in range(100):
            k, v = f"{codec}-{i}".encode(), (f"value {i} " * 20).encode()
            p.produce(topic, key=k, value=v, partition=0, headers=[("h", codec.encode())],
                      timestamp=1_700_000_000_000 + i)
            sent.append((k, v, codec.encode(), 1_700_000_000_000 + i))
        flush_all(p)
    msgs = consume_exact(broker.bootstrap, topic, 0, len(sent))
    got = [(m.key(), m.value(), dict(m.headers())["h"], m.timestamp()[1]) for m in msgs]
    assert got == sent
    want = "none" if target == "uncompressed" else target
    codecs = {b["codec"] for b in stored_batches(broker.data_dir, topic, 0)}
    assert codecs == {want}, codecs

    if target not in ("gzip", "uncompressed"):
        return  # kafka-python decodes other codecs only with extra packages the venv lacks
    from kafka import KafkaConsumer, TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                      consumer_timeout_ms=10_000)
    try:
        c.assign([KTP(topic, 0)])
        c.seek_to_beginning()
        values = [(r.key, r.value) for r in c]
    finally:
        c.close()
    assert values == [(k, v) for k, v, _, _ in sent]
