"""Restart and crash (kill -9) durability of skein's log.

Kafka behaviour asserted here:
- SIGTERM shuts the broker down cleanly (exit code 0); a start on the same data dir
  serves every record back identical (key, value, headers, timestamp, offset), and new
  produces continue at the next offset; topics and their partition counts survive.
- Idempotent producer state survives a restart: the same producer keeps producing
  after the restart without duplicates or sequence errors.
- kill -9 in the middle of an acks=all, enable.idempotence=True produce loop: after a
  restart every acknowledged record is present exactly once, at the offset its
  delivery report gave, and the partition holds no duplicates and is in produce order
  (records that were never acknowledged may or may not be present).
"""

import threading
from collections import Counter
import time

from confluent_kafka.admin import AdminClient, NewTopic

from helpers import COMMON, DeliveryLog, consume_exact, consume_until_end, flush_all, producer, unique_topic
from test_confluent_produce_consume import check_delivery, check_messages, make_records, produce_all


def test_restart_reads_everything_back(broker):
    topics = {
        unique_topic("rs-plain"): ("none", make_records(2000, "plain")),
        unique_topic("rs-zstd"): ("zstd", make_records(1500, "zstd")),
    }
    for topic, (codec, recs) in topics.items():
        dl = produce_all(broker.bootstrap, topic, recs, acks="all",
                         **{"enable.idempotence": True, "compression.type": codec, "linger.ms": 10})
        check_delivery(dl, recs)
    multi = unique_topic("rs-multi")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **COMMON})
    admin.create_topics([NewTopic(multi, num_partitions=3, replication_factor=1,
                                  config={"retention.ms": "86400000"})], operation_timeout=10)[multi].result(20)

    rc = broker.restart()
    assert rc == 0, f"broker exited with {rc} on SIGTERM (expected a clean 0)"

    for topic, (codec, recs) in topics.items():
        msgs = consume_exact(broker.bootstrap, topic, 0, len(recs))
        check_messages(msgs, recs, topic)

    md = AdminClient({"bootstrap.servers": broker.bootstrap, **COMMON}).list_topics(timeout=20)
    assert sorted(md.topics[multi].partitions) == [0, 1, 2], "partition count lost on restart"

    # New records continue at the next offset.
    topic, (codec, recs) = next(iter(topics.items()))
    more = make_records(100, "after")
    dl = produce_all(broker.bootstrap, topic, more, acks="all", **{"enable.idempotence": True})
    check_delivery(dl, more, base_offset=len(recs))
    msgs = consume_exact(broker.bootstrap, topic, 0, len(recs) + len(more))
    check_messages(msgs, recs + more, topic)

    # A second restart right away (nothing new written) changes nothing.
    assert broker.restart() == 0
    msgs = consume_exact(broker.bootstrap, topic, 0, len(recs) + len(more))
    check_messages(msgs, recs + more, topic)


def test_idempotent_producer_across_restart(broker):
    # One producer instance keeps running while the broker restarts underneath it.
    topic = unique_topic("rs-idem")
    dl = DeliveryLog()
    p = producer(broker.bootstrap, acks="all", **{"enable.idempotence": True, "linger.ms": 5,
                                                  "message.timeout.ms": 60000})
    for i in range(500):
        p.produce(topic, value=f"{i}".encode(), partition=0, on_delivery=dl)
    flush_all(p)
    assert broker.restart() == 0
    for i in range(500, 1000):
        p.produce(topic, value=f"{i}".encode(), partition=0, on_delivery=dl)
    flush_all(p, 60)
    assert not dl.errors(), [str(r["err"]) for r in dl.errors()[:5]]
    assert [r["offset"] for r in dl.reports] == list(range(1000))
    msgs, lo, hi = consume_until_end(broker.bootstrap, topic, 0)
    assert (lo, hi) == (0, 1000)
    assert [m.value() for m in msgs] == [f"{i}".encode() for i in range(1000)]


def run_kill9_round(broker, topic, kill_after_acked, resume_acked, max_records=200_000):
    """One crash round: a background producer loop (acks=all, idempotence) that records
    every acknowledged value; kill -9 once `kill_after_acked` more values are acked,
    restart, let `resume_acked` more be acked, stop. Returns (acked {value: offset},
    failed [values], fatal errors)."""
    acked = {}
    failed = []
    lock = threading.Lock()
    stop = threading.Event()
    fatal = []

    def on_delivery(err, msg):
        v = int(msg.value())
        with lock:
            if err is None:
                assert msg.partition() == 0
                acked[v] = msg.offset()
            else:
                failed.append((v, str(err)))

    def on_error(err):
        if err.fatal():
            fatal.append(str(err))

    p = producer(
        broker.bootstrap,
        acks="all",
        error_cb=on_error,
        **{
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.timeout.ms": 60000,
            "retry.backoff.ms": 50,
            "queue.buffering.max.messages": 20000,
        },
    )
    next_value = [run_kill9_round.next_value]

    def loop():
        while not stop.is_set() and next_value[0] < max_records:
            try:
                p.produce(topic, value=str(next_value[0]).encode(), partition=0, on_delivery=on_delivery)
                next_value[0] += 1
            except BufferError:
                p.poll(0.05)
                continue
            p.poll(0)
            if next_value[0] % 50 == 0:
                time.sleep(0.001)  # keep many small produce requests in flight
        # Deliver whatever is still queued (the broker is back by now).
        p.flush(60)

    t = threading.Thread(target=loop, daemon=True)

    def wait_acked(n, what, timeout=40):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= n:
                    return
            if fatal:
                break
            time.sleep(0.01)
        stop.set()
        raise AssertionError(f"timed out waiting for {what}: {len(acked)} acked, fatal={fatal}, "
                             f"failed={failed[:5]}\n{broker.log_tail()}")

    base = len(acked)
    t.start()
    try:
        wait_acked(base + kill_after_acked, f"{kill_after_acked} acks before the kill")
        broker.kill9()
        with lock:
            acked_at_kill = len(acked)
        time.sleep(0.3)
        broker.start()
        wait_acked(acked_at_kill + resume_acked, f"{resume_acked} acks after the restart")
    finally:
        stop.set()
        t.join(90)
    assert not t.is_alive(), "producer thread did not finish"
    run_kill9_round.next_value = next_value[0]
    return acked, failed, fatal


run_kill9_round.next_value = 0


def test_kill9_durability(broker):
    topic = unique_topic("kill9")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **COMMON})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], operation_timeout=10)[topic].result(20)

    run_kill9_round.next_value = 0
    all_acked, all_failed, all_fatal = {}, [], []
    # Several crashes at different points of the loop.
    for kill_after in (500, 2000, 1500, 5000, 3000):
        acked, failed, fatal = run_kill9_round(broker, topic, kill_after, 500)
        all_acked.update(acked)
        all_failed += failed
        all_fatal += fatal
        assert not fatal, f"producer hit a fatal error after a kill -9: {fatal}"
    produced = run_kill9_round.next_value

    msgs, lo, hi = consume_until_end(broker.bootstrap, topic, 0, timeout=60)
    values = [int(m.value()) for m in msgs]
    print(f"kill -9 rounds: produced {produced}, acknowledged {len(all_acked)}, "
          f"failed {len(all_failed)}, in the log {len(values)} (offsets {lo}..{hi})")
    offsets = [m.offset() for m in msgs]
    assert lo == 0
    assert offsets == list(range(lo, hi)), "offsets are not dense"

    # No duplicates, and the log is in produce order.
    dups = sorted(v for v, n in Counter(values).items() if n > 1)
    assert not dups, f"duplicated values in the log: {dups[:20]}"
    assert values == sorted(values), "log is not in produce order"

    # Every acknowledged value is there, at the offset its delivery report gave.
    by_value = {v: off for off, v in zip(offsets, values)}
    missing = sorted(v for v in all_acked if v not in by_value)
    assert not missing, (f"{len(missing)} acknowledged record(s) lost after kill -9, first {missing[:20]}; "
                         f"acked {len(all_acked)} of {produced} produced")
    moved = [(v, all_acked[v], by_value[v]) for v in all_acked if by_value[v] != all_acked[v]]
    assert not moved, f"acknowledged records at other offsets than acknowledged (value, acked, actual): {moved[:20]}"
    assert all(v < produced for v in values), "values in the log that were never produced"
    # With idempotence and a 60 s message timeout, the client should have delivered everything.
    assert not all_failed, f"{len(all_failed)} delivery failure(s), first {all_failed[:5]}"
    assert len(all_acked) == produced, f"acked {len(all_acked)} of {produced}"
