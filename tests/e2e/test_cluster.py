"""A three-broker cluster on loopback: every broker is a voter of the metadata quorum.

Checked with real clients (kcat, confluent-kafka) and raw protocol requests:
- every broker's Metadata lists all three brokers; a 6-partition, replication-factor-3 topic
  has replicas on all three brokers and its leaders spread evenly;
- clients produce and consume through the partition leaders; a broker that does not lead a
  partition answers NOT_LEADER_OR_FOLLOWER;
- kill -9 the quorum leader: a surviving broker creates a topic within seconds, the dead broker
  is fenced (it leaves Metadata and in-sync survivors take over its partitions), and after a
  restart it catches up through a snapshot (the survivors compacted their log meanwhile), is
  unfenced, rejoins the ISRs and leads its partitions again (preferred-leader election).
"""

import re
import socket
import struct
import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import free_port, skein_bin
from helpers import consume_exact, flush_all, producer, unique_topic

NOT_LEADER_OR_FOLLOWER = 6

FAST = [
    "--broker-session-timeout-ms",
    "2000",
    "--broker-heartbeat-interval-ms",
    "300",
    "--replica-lag-time-max-ms",
    "3000",
    "--leader-imbalance-check-interval-ms",
    "1000",
]


def cli(broker, *args, timeout=30):
    return subprocess.run(
        [skein_bin(), "--bootstrap", broker.bootstrap, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cluster_status(broker):
    r = cli(broker, "cluster", "status")
    assert r.returncode == 0, r.stderr
    return r.stdout


def quorum_leader(broker):
    m = re.search(r"Quorum leader:\s+(\d+)", cluster_status(broker))
    assert m, "no quorum leader in `skein cluster status`"
    return int(m.group(1))


def kcat_brokers(kcat, broker):
    out = subprocess.run(
        [kcat, "-L", "-b", broker.bootstrap], capture_output=True, text=True, timeout=30
    ).stdout
    return sorted(int(x) for x in re.findall(r"broker (\d+) at ", out)), out


def wait_for(what, check, timeout=20.0, every=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


_ADMINS = {}


def admin(broker):
    """One AdminClient per broker address, kept alive (librdkafka tears a handle down when
    Python drops the last reference, failing calls still in flight on it)."""
    if broker.bootstrap not in _ADMINS:
        _ADMINS[broker.bootstrap] = AdminClient({"bootstrap.servers": broker.bootstrap})
    return _ADMINS[broker.bootstrap]


@pytest.fixture(autouse=True)
def _drop_admins(cluster_factory):
    """Close the admin clients before the brokers stop (set up after cluster_factory, so torn
    down before it)."""
    yield
    _ADMINS.clear()


def create(broker, topic, partitions, rf):
    fs = admin(broker).create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=rf)]
    )
    fs[topic].result(timeout=30)


def partitions_of(broker, topic):
    md = admin(broker).list_topics(topic=topic, timeout=10)
    t = md.topics[topic]
    assert t.error is None, t.error
    return {p.id: p for p in t.partitions.values()}


def list_offsets_error(broker, topic, partition):
    """Raw ListOffsets v1 for (topic, partition): the partition's error code."""
    name = topic.encode()
    body = struct.pack(">i", -1)  # replica id
    body += struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
    body += struct.pack(">i", 1) + struct.pack(">iq", partition, -1)
    client = b"skein-e2e"
    header = struct.pack(">hhih", 2, 1, 7, len(client)) + client
    payload = header + body
    with socket.create_connection((broker.host, broker.port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv(s, 4))[0]
        resp = _recv(s, size)
    # correlation id, topics[1], name, partitions[1], partition, error code
    pos = 4 + 4
    (nlen,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + nlen + 4
    _, err = struct.unpack_from(">ih", resp, pos)
    return err


def _recv(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed"
        buf += chunk
    return buf


def test_three_brokers_spread_a_replicated_topic(cluster_factory, kcat):
    nodes = cluster_factory(3, FAST)
    for b in nodes:
        ids, out = wait_for(
            f"broker {b.node_id} to list 3 brokers",
            lambda b=b: (lambda r: r if r[0] == [1, 2, 3] else None)(kcat_brokers(kcat, b)),
        )
        assert ids == [1, 2, 3], out
        md = admin(b).list_topics(timeout=10)
        assert sorted(md.brokers) == [1, 2, 3]
    topic = unique_topic("spread")
    create(nodes[1], topic, 6, 3)
    parts = wait_for("the topic on broker 3", lambda: partitions_of(nodes[2], topic))
    leads = {1: 0, 2: 0, 3: 0}
    for p in parts.values():
        assert sorted(p.replicas) == [1, 2, 3], p
        assert p.leader == p.replicas[0]
        leads[p.leader] += 1
    assert leads == {1: 2, 2: 2, 3: 2}, leads

    # Clients route every partition to its leader.
    pr = producer(nodes[0].bootstrap)
    for part in range(6):
        for i in range(10):
            pr.produce(topic, value=f"{part}-{i}".encode(), partition=part)
    flush_all(pr)
    for part in range(6):
        got = consume_exact(nodes[2].bootstrap, topic, part, 10)
        assert [m.value() for m in got] == [f"{part}-{i}".encode() for i in range(10)]

    # A broker answers only for what it leads.
    for b in nodes:
        for part, p in parts.items():
            err = list_offsets_error(b, topic, part)
            if p.leader == b.node_id:
                assert err == 0
            else:
                assert err == NOT_LEADER_OR_FOLLOWER, (b.node_id, part, err)

    status = cluster_status(nodes[0])
    assert "Brokers (3 live)" in status, status
    for b in nodes:
        assert re.search(rf"^\s+{b.node_id}\t127\.0\.0\.1:{b.port}\t", status, re.M), status


def test_quorum_leader_killed_survivors_create_and_restart_catches_up_by_snapshot(
    cluster_factory, kcat
):
    # Snapshot every 8 records, so the dead node misses a compacted log.
    nodes = cluster_factory(3, FAST + ["--metadata-snapshot-entries", "8"])
    by_id = {b.node_id: b for b in nodes}
    before = unique_topic("before")
    create(nodes[0], before, 6, 3)
    wait_for("metadata everywhere", lambda: all(partitions_of(b, before) for b in nodes))

    leader = by_id[quorum_leader(nodes[0])]
    survivors = [b for b in nodes if b is not leader]
    leader.kill9()
    t0 = time.monotonic()
    after = unique_topic("after")

    def try_create():
        try:
            create(survivors[0], after, 2, 1)
            return True
        except Exception as e:  # NOT_CONTROLLER / timeouts while a new leader is elected
            return None if "already exists" not in str(e) else True

    wait_for("a topic created through a survivor", try_create, timeout=15)
    took = time.monotonic() - t0
    assert took < 10, f"creating a topic after losing the quorum leader took {took:.1f}s"

    # The dead broker is fenced: it leaves Metadata.
    wait_for(
        "the dead broker to be fenced",
        lambda: kcat_brokers(kcat, survivors[0])[0] == sorted(b.node_id for b in survivors),
    )
    # Partitions it led fail over to an in-sync survivor (every survivor applies the change;
    # the second may be a moment behind the first).
    alive = {b.node_id for b in survivors}
    wait_for(
        "failover seen by every survivor",
        lambda: all(
            all(p.leader in alive for p in partitions_of(b, before).values()) for b in survivors
        ),
    )
    for p in partitions_of(survivors[1], before).values():
        if p.replicas[0] != leader.node_id:
            assert p.leader == p.replicas[0], p

    # Enough metadata while it is down that the survivors snapshot past its log.
    extra = [unique_topic(f"more{i}") for i in range(12)]
    for t in extra:
        wait_for(f"create {t}", lambda t=t: (create(survivors[1], t, 1, 1) or True), timeout=30)

    leader.start(timeout=30)
    wait_for(
        "the restarted broker to see every topic",
        lambda: set(admin(leader).list_topics(timeout=10).topics) >= {before, after, *extra},
    )
    with open(leader.log_path) as f:
        log = f.read()
    assert "metadata restored from a snapshot" in log, leader.log_tail()

    # Unfenced again: listed everywhere, leading its partitions, quorum fully caught up.
    wait_for(
        "all three brokers listed",
        lambda: all(kcat_brokers(kcat, b)[0] == [1, 2, 3] for b in nodes),
    )
    # It catches up, rejoins every ISR, and preferred-leader election gives its partitions back.
    wait_for(
        "preferred leaders restored",
        lambda: all(
            p.leader == p.replicas[0] and len(p.isrs) == 3
            for p in partitions_of(leader, before).values()
        ),
        timeout=30,
    )

    def caught_up():
        s = cluster_status(survivors[0])
        lags = re.findall(r"^\s+\d+\t\d+\t(\d+)\t", s, re.M)
        return s if len(lags) == 3 and all(int(x) == 0 for x in lags) else None

    wait_for("every voter caught up", caught_up)


def test_a_broker_outside_the_voters_observes_and_serves(cluster_factory, broker_factory, kcat):
    nodes = cluster_factory(3, FAST + ["--metadata-snapshot-entries", "8"])
    # Enough history that the observer starts from a snapshot.
    for i in range(10):
        create(nodes[i % 3], unique_topic(f"old{i}"), 1, 1)
    obs = broker_factory(
        name="observer",
        node_id=4,
        extra_args=[
            "--voters",
            nodes[0].voters,
            "--controller-listen",
            f"127.0.0.1:{free_port()}",
            *FAST,
        ],
    ).start(timeout=30)
    wait_for(
        "every broker to list the observer",
        lambda: all(kcat_brokers(kcat, b)[0] == [1, 2, 3, 4] for b in [*nodes, obs]),
    )
    # Admin requests through the observer; its replicas and leadership like anyone's.
    topic = unique_topic("wide")
    create(obs, topic, 8, 4)
    parts = wait_for("the topic on the observer", lambda: partitions_of(obs, topic))
    assert sorted(p.leader for p in parts.values()) == [1, 1, 2, 2, 3, 3, 4, 4]
    mine = [i for i, p in parts.items() if p.leader == 4]
    pr = producer(nodes[0].bootstrap)
    for part in mine:
        pr.produce(topic, value=b"via-observer", partition=part)
    flush_all(pr)
    for part in mine:
        assert [m.value() for m in consume_exact(obs.bootstrap, topic, part, 1)] == [b"via-observer"]
        assert list_offsets_error(obs, topic, part) == 0
    status = cluster_status(obs)
    assert "Brokers (4 live)" in status, status
    with open(obs.log_path) as f:
        assert "observing the metadata quorum" in f.read()


def test_producer_rides_out_a_partition_leader_dying_and_returning(cluster_factory):
    """An idempotent acks=all producer keeps sending while a broker that leads partitions is
    killed (an in-sync replica takes over) and restarted (it catches up and leads again): the
    client recovers through NOT_LEADER_OR_FOLLOWER and metadata refreshes, every message is
    delivered once, in order, with nothing lost."""
    from helpers import DeliveryLog

    nodes = cluster_factory(3, FAST)
    topic = unique_topic("ride")
    create(nodes[0], topic, 3, 3)
    wait_for("metadata everywhere", lambda: all(partitions_of(b, topic) for b in nodes))
    parts = partitions_of(nodes[0], topic)
    victim = next(b for b in nodes if b.node_id == parts[1].leader)
    others = [b for b in nodes if b is not victim]
    log = DeliveryLog()
    pr = producer(
        ",".join(b.bootstrap for b in others),
        **{"enable.idempotence": True, "acks": "all", "message.timeout.ms": 60000},
    )
    sent = {p: [] for p in range(3)}

    def send(n, start):
        for i in range(start, start + n):
            p = i % 3
            v = f"m{i}".encode()
            sent[p].append(v)
            pr.produce(topic, value=v, partition=p, on_delivery=log)
            pr.poll(0)
            time.sleep(0.005)

    send(150, 0)
    pr.flush(30)
    victim.kill9()
    send(150, 150)  # a third of these wait for the victim's partition
    wait_for(
        "an in-sync replica to take over",
        lambda: partitions_of(others[0], topic)[parts[1].id].leader
        in {b.node_id for b in others},
    )
    victim.start(timeout=30)
    send(150, 300)
    flush_all(pr, timeout=60)
    assert log.errors() == [], log.errors()[:5]
    assert len(log.reports) == 450
    for p in range(3):
        leader = partitions_of(others[0], topic)[p].leader
        at = next(b for b in nodes if b.node_id == leader)
        got = consume_exact(at.bootstrap, topic, p, len(sent[p]))
        assert [m.value() for m in got] == sent[p], f"partition {p}"


def describe_quorum(broker):
    """Raw DescribeQuorum v0 (flexible) for __cluster_metadata-0 at `broker`: (top-level error,
    partition error, leader id, leader epoch, sorted voter ids)."""
    name = b"__cluster_metadata"
    client = b"skein-e2e"
    header = struct.pack(">hhih", 55, 0, 9, len(client)) + client + b"\x00"
    body = b"\x02" + bytes([len(name) + 1]) + name + b"\x02" + struct.pack(">i", 0) + b"\x00\x00\x00"
    payload = header + body
    with socket.create_connection((broker.host, broker.port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv(s, 4))[0]
        resp = _recv(s, size)
    pos = 4 + 1  # correlation id, tagged fields
    (top_err,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + 1  # topics: one
    pos += 1 + resp[pos] - 1  # topic name
    pos += 1  # partitions: one
    _, err, leader, epoch, _hw = struct.unpack_from(">ihiiq", resp, pos)
    pos += 22
    voters = []
    count = resp[pos] - 1
    pos += 1
    for _ in range(count):
        (rid,) = struct.unpack_from(">i", resp, pos)
        voters.append(rid)
        pos += 4 + 8 + 1  # replica id, log end offset, tagged fields
    return top_err, err, leader, epoch, sorted(voters)


def test_describe_quorum_at_any_broker(cluster_factory):
    """Kafka's brokers forward DescribeQuorum to the active controller, and the Java Admin
    client sends describeMetadataQuorum to whichever broker is least loaded: every broker
    answers with the quorum leader's view, not NOT_LEADER_OR_FOLLOWER."""
    nodes = cluster_factory(3, FAST)
    leader = quorum_leader(nodes[0])
    answers = [describe_quorum(b) for b in nodes]
    for b, (top_err, err, at, _epoch, voters) in zip(nodes, answers):
        assert (top_err, err) == (0, 0), f"broker {b.node_id}: errors {top_err}, {err}"
        assert at == leader and voters == [1, 2, 3], (b.node_id, answers)
    assert len({a[3] for a in answers}) == 1, answers
