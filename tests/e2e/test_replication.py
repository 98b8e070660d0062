"""Replicated partitions under failures, with a real client (confluent-kafka / librdkafka).

Three brokers, a topic with replication factor 3, min.insync.replicas 2 and 6 partitions. An
idempotent acks=all producer sends all the while:
- kill -9 the leader of partition 0, restart it a few seconds later (it truncates to the new
  leader's log, catches up and rejoins every ISR), then kill -9 another broker;
- pause the leader of partition 0 with SIGSTOP past the session timeout (a zombie leader: the
  others fence it and elect a new leader), then wake it with SIGCONT.
At the end a fresh consumer reads every partition from the beginning: every acknowledged
record is there exactly once, at the offset it was acknowledged at, in the order sent.
"""

import re
import signal
import subprocess
import time

from confluent_kafka.admin import NewTopic

from helpers import DeliveryLog, consume_exact, flush_all, producer, unique_topic
from test_cluster import FAST, admin, cli, partitions_of, wait_for

PARTITIONS = 6


def make_topic(nodes, topic):
    fs = admin(nodes[0]).create_topics(
        [
            NewTopic(
                topic,
                num_partitions=PARTITIONS,
                replication_factor=3,
                config={"min.insync.replicas": "2"},
            )
        ]
    )
    fs[topic].result(timeout=30)
    wait_for("metadata everywhere", lambda: all(partitions_of(b, topic) for b in nodes))


class Workload:
    """An idempotent acks=all producer sending numbered values round-robin over partitions."""

    def __init__(self, nodes, topic):
        self.topic = topic
        self.log = DeliveryLog()
        self.sent = 0
        self.pr = producer(
            ",".join(b.bootstrap for b in nodes),
            **{
                "enable.idempotence": True,
                "acks": "all",
                "message.timeout.ms": 90000,
                "linger.ms": 5,
            },
        )

    def pump(self, seconds, rate=200):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            v = f"v{self.sent}".encode()
            self.pr.produce(
                self.topic, value=v, partition=self.sent % PARTITIONS, on_delivery=self.log
            )
            self.sent += 1
            self.pr.poll(0)
            time.sleep(1.0 / rate)

    def check(self, reader):
        flush_all(self.pr, timeout=90)
        assert self.log.errors() == [], self.log.errors()[:5]
        assert len(self.log.reports) == self.sent
        for p in range(PARTITIONS):
            acked = sorted(
                (r["offset"], r["value"]) for r in self.log.reports if r["partition"] == p
            )
            got = consume_exact(reader.bootstrap, self.topic, p, len(acked), timeout=60)
            assert [(m.offset(), m.value()) for m in got] == acked, f"partition {p}"
            # Sent order is kept within the partition.
            values = [int(v[1:]) for _, v in acked]
            assert values == sorted(values), f"partition {p} reordered"


def parts_now(broker, topic):
    """{partition: (leader, isr)} as `broker` itself answers Metadata (through `skein topics
    describe`, which asks only that broker), or None if it does not answer in time."""
    try:
        r = cli(broker, "topics", "describe", topic, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0:
        return None
    out = {}
    for m in re.finditer(r"Partition: (\d+)\tLeader: (\S+)\tReplicas: \S*\tIsr: (\S*)", r.stdout):
        leader = -1 if m.group(2) == "none" else int(m.group(2))
        out[int(m.group(1))] = (leader, [int(x) for x in m.group(3).split(",") if x])
    return out or None


def full_isr(broker, topic):
    parts = parts_now(broker, topic)
    return parts is not None and all(len(isr) == 3 for _, isr in parts.values())


def leader_of(broker, topic, partition):
    parts = parts_now(broker, topic)
    return None if parts is None else parts[partition][0]


def wait_new_leader(w, broker, topic, old, timeout=30):
    """Keeps producing until `broker` names a leader for partition 0 other than `old`."""
    end = time.monotonic() + timeout
    while leader_of(broker, topic, 0) in (old, None, -1):
        assert time.monotonic() < end, f"no new leader for partition 0: {parts_now(broker, topic)}"
        w.pump(0.5)
    return leader_of(broker, topic, 0)


def wait_full_isr(w, broker, topic, timeout=30):
    end = time.monotonic() + timeout
    while not full_isr(broker, topic):
        assert time.monotonic() < end, f"ISRs not full again: {parts_now(broker, topic)}"
        w.pump(0.5)


def test_acks_all_survives_leader_kills_with_min_insync_2(cluster_factory):
    nodes = cluster_factory(3, FAST)
    topic = unique_topic("repl")
    make_topic(nodes, topic)
    w = Workload(nodes, topic)
    w.pump(2)

    leader0 = partitions_of(nodes[0], topic)[0].leader
    victim = next(b for b in nodes if b.node_id == leader0)
    others = [b for b in nodes if b is not victim]
    victim.kill9()
    new0 = wait_new_leader(w, others[0], topic, victim.node_id)
    assert new0 in {b.node_id for b in others}, new0
    w.pump(2)
    victim.start(timeout=30)
    # Back in every ISR before the next failure (min.insync.replicas 2 of 3).
    wait_full_isr(w, others[0], topic)
    w.pump(1)

    second = next(b for b in nodes if b is not victim)
    second.kill9()
    w.pump(3)
    reader = next(b for b in nodes if b is not second)
    w.check(reader)
    assert w.sent > 1000


def test_a_paused_leader_is_replaced_and_its_wakeup_loses_nothing(cluster_factory):
    nodes = cluster_factory(3, FAST)
    topic = unique_topic("zombie")
    make_topic(nodes, topic)
    w = Workload(nodes, topic)
    w.pump(1.5)

    leader0 = partitions_of(nodes[0], topic)[0].leader
    zombie = next(b for b in nodes if b.node_id == leader0)
    others = [b for b in nodes if b is not zombie]
    zombie.proc.send_signal(signal.SIGSTOP)
    try:
        # The others fence it (session timeout 2 s) and elect in-sync leaders.
        wait_new_leader(w, others[0], topic, zombie.node_id)
        w.pump(2)
    finally:
        zombie.proc.send_signal(signal.SIGCONT)
    # It wakes believing it leads; it must not acknowledge anything it cannot replicate.
    wait_full_isr(w, others[0], topic)
    w.pump(2)
    w.check(nodes[0])


def test_sigterm_hands_leadership_over_before_the_session_timeout(cluster_factory):
    """Controlled shutdown: a broker stopped with SIGTERM moves its leaderships to in-sync
    replicas before it exits, so clients need not wait for the session timeout (9 s here);
    acks=all writes carry on with nothing lost, and the broker gets its partitions back by
    preferred-leader election when it returns."""
    args = [
        "--broker-heartbeat-interval-ms",
        "300",
        "--leader-imbalance-check-interval-ms",
        "1000",
    ]
    nodes = cluster_factory(3, args)
    topic = unique_topic("handover")
    make_topic(nodes, topic)
    w = Workload(nodes, topic)
    w.pump(1)
    leader0 = leader_of(nodes[0], topic, 0)
    victim = next(b for b in nodes if b.node_id == leader0)
    others = [b for b in nodes if b is not victim]
    t0 = time.monotonic()
    assert victim.stop() == 0
    while leader_of(others[0], topic, 0) not in {b.node_id for b in others}:
        assert time.monotonic() - t0 < 8, f"no handover: {parts_now(others[0], topic)}"
        time.sleep(0.05)
    took = time.monotonic() - t0
    print(f"leadership of partition 0 moved {took:.2f}s after SIGTERM")
    w.pump(2)
    victim.start(timeout=30)
    end = time.monotonic() + 30
    while leader_of(others[0], topic, 0) != victim.node_id:
        assert time.monotonic() < end, f"preferred leader not restored: {parts_now(others[0], topic)}"
        w.pump(0.5)
    w.pump(1)
    w.check(others[0])
