#!/usr/bin/env python3
"""How long a group coordinator takes to load `__consumer_offsets` after a restart, with the
log cleaner off (every commit ever made is replayed) and on (the compacted log holds one commit
per group and partition).

Writes COMMITS offset commits over KEYS keys (GROUPS groups x PARTITIONS partitions of one
topic) with confluent-kafka, restarts the broker, and times from the restart until every
group's committed offsets are answered (a coordinator answers COORDINATOR_LOAD_IN_PROGRESS
until its load ends). The restart of an empty broker is timed too, as the floor.

    .venv/bin/python bench/offsets_load.py --skein target/release/skein [--commits 1000000]
"""

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "load-bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, skein, data, port, cleaner):
        self.args = [skein, "broker", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                     "--log-level", "warn", "--offsets-topic-num-partitions", "1",
                     "--offsets-topic-replication-factor", "1",
                     "--offsets-topic-segment-bytes", str(16 << 20),
                     "--log-cleaner-enable", "true" if cleaner else "false",
                     "--log-cleaner-backoff-ms", "500"]
        self.bootstrap = f"127.0.0.1:{port}"
        self.data = data
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.monotonic()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


def consumer(bootstrap, group):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False, "log_level": 0})


def commit_all(bootstrap, groups, partitions, rounds):
    for g in range(groups):
        c = consumer(bootstrap, f"g{g}")
        for r in range(1, rounds + 1):
            c.commit(offsets=[TopicPartition(TOPIC, p, r) for p in range(partitions)],
                     asynchronous=False)
        c.close()


def wait_loaded(bootstrap, groups, partitions, rounds, started):
    """Seconds from `started` until every group's committed offsets read back."""
    want = [rounds] * partitions
    for g in range(groups):
        c = consumer(bootstrap, f"g{g}")
        while True:
            try:
                got = c.committed([TopicPartition(TOPIC, p) for p in range(partitions)],
                                  timeout=30)
                if [tp.offset for tp in got] == want:
                    break
            except Exception:  # COORDINATOR_LOAD_IN_PROGRESS and friends, until loaded
                pass
            time.sleep(0.01)
        c.close()
    return time.monotonic() - started


def log_bytes(data):
    d = os.path.join(data, "__consumer_offsets-0")
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".log"))


def run(skein, cleaner, groups, partitions, rounds):
    data = tempfile.mkdtemp(prefix="skein-offsets-load-")
    try:
        b = Broker(skein, data, free_port(), cleaner)
        b.start()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        deadline = time.monotonic() + 30
        while True:
            try:
                admin.create_topics([NewTopic(TOPIC, partitions, 1)])[TOPIC].result(10)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        t = time.monotonic()
        commit_all(b.bootstrap, groups, partitions, rounds)
        commit_s = time.monotonic() - t
        if cleaner:
            # Until the cleaned log stops shrinking.
            last, still = None, 0
            while still < 6:
                now = log_bytes(data)
                still = still + 1 if now == last else 0
                last = now
                time.sleep(0.5)
        size = log_bytes(data)
        b.stop()
        started = b.start()
        load_s = wait_loaded(b.bootstrap, groups, partitions, rounds, started)
        b.stop()
        return commit_s, size, load_s
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skein", required=True)
    ap.add_argument("--commits", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=100)
    a = ap.parse_args()
    rounds = max(1, a.commits // (a.groups * a.partitions))
    commits = rounds * a.groups * a.partitions
    print(f"{commits} commits over {a.groups * a.partitions} keys")
    for cleaner in (False, True):
        commit_s, size, load_s = run(a.skein, cleaner, a.groups, a.partitions, rounds)
        print(f"cleaner {'on ' if cleaner else 'off'}: committed in {commit_s:.1f} s, "
              f"__consumer_offsets {size / 1e6:.1f} MB, restart to all offsets read back "
              f"{load_s:.2f} s")
    floor = run(a.skein, False, 1, 1, 1)[2]
    print(f"floor (one commit): restart to offsets read back {floor:.2f} s")


if __name__ == "__main__":
    main()
