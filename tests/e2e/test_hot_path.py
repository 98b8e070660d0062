"""The produce and fetch hot path under load, with a real client (confluent-kafka).

Kafka behaviour asserted here:
- A producer that keeps many requests in flight on one connection keeps that connection:
  the broker never loses track of where a request frame starts (a regression test: skein's
  connection loop once dropped a half-read frame whenever a response completed first, then
  read a record's bytes as the next frame's length and closed the connection).
- Data older than the page-cache window (`--page-cache-window-bytes`), which the broker
  has written back and dropped from the cache, is read back from disk intact, before and
  after a restart.
- Fetch responses that carry many batches as chunks of their own (not copied into the
  response) reach another client (kafka-python) intact across six partitions of mixed record
  sizes, with default fetch limits and with tight ones.
"""

import hashlib
import time

from helpers import consume_exact, flush_all, producer, unique_topic


def value(i, size):
    seed = hashlib.sha256(str(i).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def produce_many(bootstrap, topic, n, size, **conf):
    p = producer(bootstrap, **conf)
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(str(err))

    for i in range(n):
        while True:
            try:
                p.produce(topic, value=value(i, size), partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.01)
        if i % 10000 == 0:
            p.poll(0)
    flush_all(p)
    assert not failed, f"{len(failed)} deliveries failed, first: {failed[0]}"


def test_busy_producer_keeps_its_connection(broker):
    topic = unique_topic("hot-conn")
    # Small batches and a deep pipeline: many requests in flight, responses completing while
    # the broker is in the middle of reading the next frame.
    produce_many(broker.bootstrap, topic, 300_000, 100, acks=1, **{
        "linger.ms": 1, "batch.size": 16384, "max.in.flight.requests.per.connection": 1000,
        "enable.idempotence": False})
    with open(broker.log_path, "rb") as f:
        log = f.read().decode(errors="replace")
    closed = [l for l in log.splitlines() if "closing connection" in l]
    assert not closed, "the broker closed a client connection:\n" + "\n".join(closed[:5])
    msgs = consume_exact(broker.bootstrap, topic, 0, 300_000, timeout=120)
    assert [m.offset() for m in msgs] == list(range(300_000))


def test_data_behind_the_page_cache_window_reads_back(broker_factory):
    b = broker_factory(extra_args=["--page-cache-window-bytes", "1048576"]).start()
    topic = unique_topic("hot-window")
    n, size = 12_000, 1024  # about 12 MiB: most of it lies behind a 1 MiB window
    produce_many(b.bootstrap, topic, n, size, acks="all", **{"linger.ms": 5})
    for attempt in ("before restart", "after restart"):
        msgs = consume_exact(b.bootstrap, topic, 0, n, timeout=60)
        for i, m in enumerate(msgs):
            assert m.offset() == i, f"{attempt}: offset {m.offset()} at position {i}"
            assert m.value() == value(i, size), f"{attempt}: record {i} differs"
        if attempt == "before restart":
            assert b.restart() == 0


SIZES = [100, 700, 5_000, 70_000, 200_000]


def test_multi_partition_fetches_arrive_intact(broker):
    """Fetch responses carry the batches read from disk as chunks of their own (no copy into
    the response); another client (kafka-python) reads six partitions of mixed sizes through
    fetches that hold many such chunks, and through fetches cut by tight size limits."""
    from confluent_kafka.admin import AdminClient, NewTopic
    from kafka import KafkaConsumer, TopicPartition

    topic = unique_topic("hot-chunks")
    parts, n = 6, 600
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, parts, 1)])[topic].result(30)
    p = producer(broker.bootstrap, acks="all", **{"linger.ms": 5})
    for i in range(n):
        p.produce(topic, value=value(i, SIZES[i % len(SIZES)]), partition=i % parts)
        p.poll(0)
    flush_all(p)
    for limits in ({}, {"max_partition_fetch_bytes": 4096, "fetch_max_bytes": 65536}):
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                          enable_auto_commit=False, request_timeout_ms=20000,
                          fetch_max_wait_ms=100, **limits)
        try:
            tps = [TopicPartition(topic, q) for q in range(parts)]
            c.assign(tps)
            c.seek_to_beginning(*tps)
            got = {}
            deadline = time.monotonic() + 60
            while len(got) < n and time.monotonic() < deadline:
                for recs in c.poll(timeout_ms=500).values():
                    for r in recs:
                        got[(r.partition, r.offset)] = r.value
        finally:
            c.close()
        assert len(got) == n, f"{limits}: read {len(got)} of {n} records"
        for i in range(n):
            want = value(i, SIZES[i % len(SIZES)])
            assert got[(i % parts, i // parts)] == want, f"{limits}: record {i} differs"
