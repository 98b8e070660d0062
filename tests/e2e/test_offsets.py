"""ListOffsets against skein: offsets for times and watermarks.

Kafka behaviour asserted here:
- ListOffsets by timestamp T answers the earliest offset whose record timestamp is
  >= T, including a record in the middle of a batch; a T after every record answers
  offset -1 (OFFSET_END, "no such record"); a T before every record answers the first
  offset.
- Watermarks: low = log start offset (0 for a new topic), high = next offset (record
  count); ListOffsets EARLIEST/LATEST (-2/-1) agree.
- A fetch at an offset beyond the high watermark -> OFFSET_OUT_OF_RANGE (seen by the
  client as an error when auto.offset.reset=error).
"""

import time

from confluent_kafka import OFFSET_END, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from helpers import recent_base_ts, COMMON, DeliveryLog, consumer, flush_all, producer, unique_topic

# Explicit CreateTime timestamps, an hour in the past: recent enough that the default
# retention.ms (7 days) keeps them (Kafka deletes segments whose newest timestamp is
# older than retention.ms, so fixed dates from years ago would be deleted).
BASE_TS = recent_base_ts()


def produce_timed(bootstrap, topic):
    """30 records, timestamps BASE_TS + 1000*i: the first 10 in one batch, then 20 in
    batches of one (flushed one by one). Returns {offset: timestamp}."""
    dl = DeliveryLog()
    p = producer(bootstrap, acks="all", **{"linger.ms": 200, "enable.idempotence": True})
    for i in range(10):
        p.produce(topic, key=b"k", value=f"v{i}".encode(), timestamp=BASE_TS + 1000 * i, partition=0, on_delivery=dl)
    flush_all(p)
    for i in range(10, 30):
        p.produce(topic, key=b"k", value=f"v{i}".encode(), timestamp=BASE_TS + 1000 * i, partition=0, on_delivery=dl)
        flush_all(p)
    assert not dl.errors(), dl.errors()[:3]
    assert [r["offset"] for r in dl.reports] == list(range(30))
    return {i: BASE_TS + 1000 * i for i in range(30)}


def test_offsets_for_times(broker):
    topic = unique_topic("oft")
    ts = produce_timed(broker.bootstrap, topic)
    c = consumer(broker.bootstrap)
    try:
        def lookup(t):
            res = c.offsets_for_times([TopicPartition(topic, 0, t)], timeout=10)
            assert len(res) == 1
            assert res[0].error is None, res[0].error
            return res[0].offset

        # Exact timestamps, including records in the middle of the first batch.
        for off in (0, 1, 5, 9, 10, 11, 20, 29):
            assert lookup(ts[off]) == off, f"offsets_for_times({ts[off]}) should be {off}"
        # Between two records: the next one.
        for off in (0, 4, 9, 15, 28):
            assert lookup(ts[off] + 1) == off + 1, f"offsets_for_times({ts[off] + 1}) should be {off + 1}"
        # Before everything: the first record.
        assert lookup(0) == 0
        assert lookup(BASE_TS - 5000) == 0
        # After everything: -1 (no record).
        assert lookup(ts[29] + 1) == OFFSET_END
        assert lookup(ts[29] + 10_000_000) == OFFSET_END

        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
        assert (lo, hi) == (0, 30)
    finally:
        c.close()


def test_watermarks_and_list_offsets(broker):
    topic = unique_topic("wm")
    c = consumer(broker.bootstrap)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **COMMON})
    try:
        p = producer(broker.bootstrap, acks="all")
        p.produce(topic, value=b"first", partition=0)
        flush_all(p)
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False) == (0, 1)
        for i in range(99):
            p.produce(topic, value=f"r{i}".encode(), partition=0)
        flush_all(p)
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False) == (0, 100)

        tp = TopicPartition(topic, 0)
        res = admin.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=10)[tp].result(20)
        assert res.offset == 0
        res = admin.list_offsets({tp: OffsetSpec.latest()}, request_timeout=10)[tp].result(20)
        assert res.offset == 100

    finally:
        c.close()


def test_fetch_out_of_range(broker):
    topic = unique_topic("oor")
    p = producer(broker.bootstrap, acks="all")
    for i in range(10):
        p.produce(topic, value=f"r{i}".encode(), partition=0)
    flush_all(p)
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        deadline = time.monotonic() + 20
        err = None
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error(), f"got a record at offset {m.offset()} from a fetch at 1000 > high watermark 10"
            err = m.error()
            break
        assert err is not None, "no error for a fetch beyond the high watermark"
        # librdkafka reports OFFSET_OUT_OF_RANGE from the broker as _AUTO_OFFSET_RESET
        # when auto.offset.reset=error.
        assert err.code() in (KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET), err
        assert "out of range" in err.str().lower() or "OFFSET_OUT_OF_RANGE" in err.str(), err
    finally:
        c.close()
