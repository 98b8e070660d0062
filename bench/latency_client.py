#!/usr/bin/env python3
"""Rate-limited producer and end-to-end latency consumer for skein's benchmark (W5, W7).

A librdkafka client (confluent-kafka) like rdkafka_performance, used where that tool cannot
serve: its `-r` rate limiter spins a core between messages, which on a two-core machine would
starve the brokers it measures. This producer sleeps between 1 ms ticks instead.

    latency_client.py produce --bootstrap B --topic T --rate R --seconds S --size N --acks A
    latency_client.py consume --bootstrap B --topic T --partitions P --expect N

Each value starts with `LATENCY:<wall clock in µs>`, the format of rdkafka_performance's
latency mode, so `rdkafka_performance -C -l -A FILE` measures end-to-end latency in C, at far
less CPU than a Python consumer. The producer prints one JSON line: messages sent and
acknowledged, failures, elapsed seconds and publish latencies (produce() call to delivery
report) in microseconds. The `consume` command (a Python consumer measuring the same end-to-end
latency) is kept for checking the C one.
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition


def produce(a):
    acked = []
    failed = [0]

    def on_delivery(err, msg):
        if err is not None:
            failed[0] += 1
        else:
            acked.append(msg.latency())

    p = Producer(
        {
            "bootstrap.servers": a.bootstrap,
            "acks": a.acks,
            "linger.ms": a.linger_ms,
            "queue.buffering.max.messages": 1_000_000,
            "enable.idempotence": False,
        }
    )
    pad = b" " * a.size
    total = int(a.seconds * a.rate)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        elapsed = time.perf_counter() - start
        due = min(int(elapsed * a.rate) + 1, total)
        # rdkafka_performance's latency format: "LATENCY:<wall clock in µs>". The records of
        # one tick are produced within microseconds of each other and share one value.
        value = (b"LATENCY:%d" % (time.time_ns() // 1000) + pad)[: a.size]
        while sent < due:
            while True:
                try:
                    p.produce(a.topic, value, on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.001)
            sent += 1
        p.poll(0)
        # Sleep to the next message's due time, in ticks of at least half a millisecond.
        nxt = start + sent / a.rate
        pause = nxt - time.perf_counter()
        if pause > 0:
            p.poll(max(pause, 0.0005))
    left = p.flush(60)
    wall = time.perf_counter() - start
    print(
        json.dumps(
            {
                "sent": sent,
                "acked": len(acked),
                "failed": failed[0],
                "unflushed": left,
                "seconds": wall,
                "latency_us": [round(x * 1e6) for x in acked],
            }
        )
    )
    return 0 if failed[0] == 0 and left == 0 else 1


def consume(a):
    c = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "group.id": "skein-bench-latency",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 500,
            "fetch.min.bytes": 1,
        }
    )
    c.assign([TopicPartition(a.topic, p, -2) for p in range(a.partitions)])
    lat = []
    got = 0
    deadline = time.monotonic() + a.timeout
    print(json.dumps({"ready": True}), file=sys.stderr, flush=True)
    while got < a.expect and time.monotonic() < deadline:
        # poll() returns as soon as one message is there; consume(n) would wait for n.
        m = c.poll(0.2)
        if m is None or m.error() is not None:
            continue
        now = time.time_ns()
        v = m.value()
        if v is not None and v.startswith(b"LATENCY:"):
            lat.append(now // 1000 - int(v[8:].split(b" ", 1)[0]))
        got += 1
    c.close()
    print(json.dumps({"received": got, "latency_us": lat}))
    return 0 if got >= a.expect else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--acks", default="all")
    p.add_argument("--linger-ms", type=float, default=1)
    c = sub.add_parser("consume")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--partitions", type=int, required=True)
    c.add_argument("--expect", type=int, required=True)
    c.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    sys.exit(produce(a) if a.cmd == "produce" else consume(a))


if __name__ == "__main__":
    main()
