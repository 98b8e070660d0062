"""The produce and fetch hot path under load, with a real client (confluent-kafka).

Kafka behaviour asserted here:
- A producer that keeps many requests in flight on one connection keeps that connection:
  the broker never loses track of where a request frame starts (a regression test: skein's
  connection loop once dropped a half-read frame whenever a response completed first, then
  read a record's bytes as the next frame's length and closed the connection).
- Data older than the page-cache window (`--page-cache-window-bytes`), which the broker
  has written back and dropped from the cache, is read back from disk intact, before and
  after a restart.
"""

import hashlib

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
