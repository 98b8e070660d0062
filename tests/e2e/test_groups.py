"""Consumer groups with real clients: skein's group coordinator and `__consumer_offsets`.

Kafka behaviour asserted (confluent-kafka / librdkafka 2.x members, each its own process, see
group_worker.py):
- three members of one group on a 6-partition topic consume 30,000 records between them,
  each record exactly once (they commit as they go and when partitions are revoked), and every
  member gets partitions; a second group reads all 30,000 records too (broadcast);
- a member killed with SIGKILL (no LeaveGroup) is dropped after its session timeout and its
  partitions go to the others: every record is still consumed, and the only duplicates are
  records the killed member had read after its last commit;
- a member that closes and comes back resumes from the group's committed offsets: it reads
  exactly the records produced after, and the committed offsets are the partitions' ends;
- kafka-python's KafkaConsumer and kafkajs's consumer join groups and commit (librdkafka
  is not the only client the coordinator serves), and so does kcat on Debian's old librdkafka
  2.0.2, which resumes from its commit on the next run;
- cooperative-sticky members joining one by one rebalance incrementally (the first member never
  gives up all its partitions) and still consume each record once;
- a static member (group.instance.id) that restarts within its session timeout gets its
  partitions back without a rebalance: the other member keeps its single assignment;
- a static member replaced by a second process with its group.instance.id while it still runs
  gets the fatal FENCED_INSTANCE_ID and stops; the partitions end with one owner each and later
  records are read once; with group.protocol=consumer (KIP-848) the second process is refused
  with the fatal UNRELEASED_INSTANCE_ID while the first runs, and takes its partitions over once
  the first closed (a static member's temporary leave);
- with three brokers, kill -9 the broker coordinating the group mid-consumption: the group
  finds the new coordinator (the new leader of its `__consumer_offsets` partition, which
  loaded the group from the log) and carries on; no record is lost and the committed offsets
  end at the partitions' ends.
"""

import os
import signal
import subprocess
import sys
import time
import uuid

from confluent_kafka import KafkaException, TopicPartition, ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import skein_bin
from helpers import COMMON, flush_all, producer, unique_topic

WORKER = os.path.join(os.path.dirname(__file__), "group_worker.py")
# A short initial rebalance delay keeps the tests quick; the default (3 s) is exercised by
# the single-broker tests, which do not override it.
FAST_CLUSTER = [
    "--broker-session-timeout-ms", "2000",
    "--broker-heartbeat-interval-ms", "300",
    "--replica-lag-time-max-ms", "3000",
    "--leader-imbalance-check-interval-ms", "1000",
]


def make_topic(bootstrap, partitions, rf=1):
    topic = unique_topic("groups")
    a = AdminClient({"bootstrap.servers": bootstrap, **COMMON})
    a.create_topics([NewTopic(topic, partitions, rf)])[topic].result(30)
    return topic


def produce_n(bootstrap, topic, start, n):
    p = producer(bootstrap, **{"linger.ms": 5, "acks": "all"})
    for i in range(start, start + n):
        while True:
            try:
                p.produce(topic, key=str(i).encode(), value=str(i).encode())
                break
            except BufferError:
                p.poll(0.1)
    flush_all(p, 60)


class Worker:
    def __init__(self, tmp_path, bootstrap, topic, group, name, *args):
        self.out = tmp_path / f"{name}.out"
        self.err = open(tmp_path / f"{name}.err", "w")
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, bootstrap, topic, group, str(self.out), *args],
            stdout=subprocess.DEVNULL, stderr=self.err)

    def wait(self, timeout=120):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"worker did not finish within {timeout}s:\n{self.log()}")
        return self.proc.returncode

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def log(self):
        self.err.flush()
        with open(self.err.name) as f:
            return f.read()

    def records(self):
        if not self.out.exists():
            return []
        with open(self.out) as f:
            return [tuple(int(x) for x in line.split()) for line in f if line.count(" ") == 2]


def committed(bootstrap, group, topic, partitions):
    a = AdminClient({"bootstrap.servers": bootstrap, **COMMON})
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    res = a.list_consumer_group_offsets([req])[group].result(30)
    # A partition with no committed offset comes back as OFFSET_INVALID (-1001): count 0.
    return {tp.partition: max(tp.offset, 0) for tp in res.topic_partitions}


def test_one_group_splits_the_partitions_and_two_groups_each_get_everything(broker, tmp_path):
    topic = make_topic(broker.bootstrap, 6)
    n = 30_000
    produce_n(broker.bootstrap, topic, 0, n)
    g1, g2 = f"g1-{uuid.uuid4().hex[:6]}", f"g2-{uuid.uuid4().hex[:6]}"
    members = [Worker(tmp_path, broker.bootstrap, topic, g1, f"m{i}", "--idle-s", "6") for i in range(3)]
    other = Worker(tmp_path, broker.bootstrap, topic, g2, "other", "--idle-s", "6")
    for w in members + [other]:
        assert w.wait() == 0, w.log()
    seen = [r[2] for w in members for r in w.records()]
    assert len(seen) == n and sorted(seen) == list(range(n)), (
        f"group {g1}: {len(seen)} records, {len(set(seen))} distinct, want each of {n} once")
    for w in members:
        assert w.records(), f"a member got no records:\n{w.log()}"
        parts = {r[0] for r in w.records()}
        assert all(not (parts & {r[0] for r in x.records()}) for x in members if x is not w), (
            "two members of one generation consumed the same partition")
    assert sorted(r[2] for r in other.records()) == list(range(n)), "the second group missed records"
    ends = committed(broker.bootstrap, g1, topic, 6)
    per_part = {}
    for w in members:
        for p, o, _ in w.records():
            per_part[p] = max(per_part.get(p, -1), o + 1)
    assert ends == per_part, f"committed {ends}, consumed up to {per_part}"


def test_killed_member_hands_over_and_a_restarted_member_resumes(broker, tmp_path):
    topic = make_topic(broker.bootstrap, 6)
    n = 9_000
    produce_n(broker.bootstrap, topic, 0, n)
    group = f"kill-{uuid.uuid4().hex[:6]}"
    slow = ["--delay-ms", "2", "--commit-every", "50", "--idle-s", "10"]
    ws = [Worker(tmp_path, broker.bootstrap, topic, group, f"w{i}", *slow) for i in range(3)]
    victim = ws[0]
    deadline = time.monotonic() + 60
    while len(victim.records()) < 300 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(victim.records()) >= 300, victim.log()
    victim.kill()
    killed_parts = {r[0] for r in victim.records()}
    for w in ws[1:]:
        assert w.wait(180) == 0, w.log()
    survivors = [r for w in ws[1:] for r in w.records()]
    took_over = killed_parts & {r[0] for r in survivors}
    assert took_over == killed_parts, (
        f"the killed member's partitions {sorted(killed_parts)} were not all taken over: "
        f"{sorted(took_over)}\n{ws[1].log()}")
    values = [r[2] for w in ws for r in w.records()]
    assert set(values) == set(range(n)), f"missing {len(set(range(n)) - set(values))} records"
    dups = len(values) - len(set(values))
    # Only what the killed member read after its last commit (at most 50 per partition it
    # held, it commits every 50 records) may come again.
    assert dups <= 50 * len(killed_parts), f"{dups} duplicates"
    # A member coming back resumes from the committed offsets: only new records.
    produce_n(broker.bootstrap, topic, n, 600)
    back = Worker(tmp_path, broker.bootstrap, topic, group, "back", "--idle-s", "5")
    assert back.wait() == 0, back.log()
    assert sorted(r[2] for r in back.records()) == list(range(n, n + 600)), back.log()
    assert sum(committed(broker.bootstrap, group, topic, 6).values()) == n + 600


KAFKA_PYTHON_GROUP = r"""
import sys
from kafka import KafkaConsumer
bootstrap, topic, group, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                  auto_offset_reset="earliest", enable_auto_commit=False,
                  consumer_timeout_ms=8000)
got = []
for m in c:
    got.append(int(m.value))
    if len(got) % 100 == 0:
        c.commit()
c.commit()
c.close()
print(len(got), len(set(got)))
"""


def test_kafka_python_and_kafkajs_consumer_groups(broker, tmp_path):
    topic = make_topic(broker.bootstrap, 4)
    produce_n(broker.bootstrap, topic, 0, 1000)
    group = f"kp-{uuid.uuid4().hex[:6]}"
    script = tmp_path / "kp.py"
    script.write_text(KAFKA_PYTHON_GROUP)
    procs = [subprocess.Popen([sys.executable, str(script), broker.bootstrap, topic, group, "1000"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    counts = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        counts.append([int(x) for x in out.split()])
    assert sum(c[0] for c in counts) == 1000 and all(c[0] == c[1] for c in counts), counts
    assert sum(committed(broker.bootstrap, group, topic, 4).values()) == 1000
    js = os.path.join(os.path.dirname(__file__), "js", "kafkajs_group.js")
    r = subprocess.run(["node", js, broker.bootstrap, topic, f"js-{group}", "1000"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, f"kafkajs failed:\n{r.stdout.decode()}\n{r.stderr.decode()}"
    assert r.stdout.decode().strip().splitlines()[-1] == "1000 1000"
    assert sum(committed(broker.bootstrap, f"js-{group}", topic, 4).values()) == 1000


def coordinator_id(bootstrap, group):
    a = AdminClient({"bootstrap.servers": bootstrap, **COMMON})
    d = a.describe_consumer_groups([group])[group].result(30)
    return d.coordinator.id


def test_group_survives_kill_9_of_its_coordinator(cluster_factory, tmp_path):
    brokers = cluster_factory(3, extra_args=FAST_CLUSTER)
    boot = ",".join(b.bootstrap for b in brokers)
    topic = make_topic(boot, 6, rf=3)
    n = 9_000
    produce_n(boot, topic, 0, n)
    group = f"fo-{uuid.uuid4().hex[:6]}"
    slow = ["--delay-ms", "2", "--commit-every", "50", "--idle-s", "15"]
    ws = [Worker(tmp_path, boot, topic, group, f"w{i}", *slow) for i in range(2)]
    deadline = time.monotonic() + 60
    while sum(len(w.records()) for w in ws) < 1000 and time.monotonic() < deadline:
        time.sleep(0.2)
    coord = coordinator_id(boot, group)
    before = committed(boot, group, topic, 6)
    assert sum(before.values()) > 0, "nothing committed before the kill"
    victim = next(b for b in brokers if b.node_id == coord)
    victim.kill9()
    for w in ws:
        assert w.wait(240) == 0, w.log()
    values = [r[2] for w in ws for r in w.records()]
    assert set(values) == set(range(n)), f"missing {len(set(range(n)) - set(values))} records"
    alive = ",".join(b.bootstrap for b in brokers if b is not victim)
    new_coord = coordinator_id(alive, group)
    assert new_coord != coord
    after = committed(alive, group, topic, 6)
    assert all(after[p] >= before[p] for p in before), (before, after)
    assert sum(after.values()) == n, after


def test_kcat_balanced_consumer_commits(broker, kcat, tmp_path):
    """kcat links Debian's librdkafka 2.0.2: an old client's JoinGroup/SyncGroup/OffsetCommit."""
    topic = make_topic(broker.bootstrap, 2)
    produce_n(broker.bootstrap, topic, 0, 500)
    group = f"kcat-{uuid.uuid4().hex[:6]}"

    def consume():
        r = subprocess.run([kcat, "-b", broker.bootstrap, "-G", group, "-X", "auto.offset.reset=earliest",
                            "-e", "-q", "-f", "%s\n", topic], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return [int(x) for x in r.stdout.split()]

    assert sorted(consume()) == list(range(500))
    assert sum(committed(broker.bootstrap, group, topic, 2).values()) == 500
    produce_n(broker.bootstrap, topic, 500, 10)
    assert sorted(consume()) == list(range(500, 510)), "kcat did not resume from its commit"


def test_cooperative_sticky_members_join_incrementally(broker, tmp_path):
    """cooperative-sticky rebalances in several rounds (members give up only what moves); the
    broker just relays, and every record is still consumed exactly once."""
    topic = make_topic(broker.bootstrap, 6)
    n = 9_000
    produce_n(broker.bootstrap, topic, 0, n)
    group = f"coop-{uuid.uuid4().hex[:6]}"
    args = ["--strategy", "cooperative-sticky", "--delay-ms", "1", "--commit-every", "50", "--idle-s", "8"]
    first = Worker(tmp_path, broker.bootstrap, topic, group, "c0", *args)
    deadline = time.monotonic() + 60
    while len(first.records()) < 500 and time.monotonic() < deadline:
        time.sleep(0.2)
    later = [Worker(tmp_path, broker.bootstrap, topic, group, f"c{i}", *args) for i in (1, 2)]
    members = [first, *later]

    def ownership(w):
        """(held, ever revoked) from a member's log; with the cooperative protocol each
        callback names only the partitions added or taken away."""
        held, revoked = set(), set()
        for line in w.log().splitlines():
            kind, _, rest = line.partition(" [")
            if kind not in ("assigned", "revoked") or not rest.endswith("]"):
                continue
            parts = {int(x) for x in rest[:-1].split(",") if x.strip()}
            if kind == "assigned":
                held |= parts
            else:
                held -= parts
                revoked |= parts
        return held, revoked

    # Once all three members have joined and before any of them goes idle and leaves, the
    # partitions are split among them. Incremental means a member gave up only partitions
    # that moved to another member: nothing it revoked came back to it, and every partition
    # revoked is now held by someone else. (An eager rebalance revokes everything and hands
    # most of it back.)
    settled = None
    deadline = time.monotonic() + 90
    while settled is None and time.monotonic() < deadline:
        assert all(w.proc.poll() is None for w in members), (
            "a member exited before the group settled with all three\n"
            + "\n".join(f"--- c{i} ---\n{w.log()}" for i, w in enumerate(members)))
        owned = [ownership(w) for w in members]
        helds = [h for h, _ in owned]
        if all(helds) and sum(len(h) for h in helds) == 6 and set().union(*helds) == set(range(6)):
            settled = owned
        else:
            time.sleep(0.2)
    logs = "\n".join(f"--- c{i} ---\n{w.log()}" for i, w in enumerate(members))
    assert settled is not None, f"the three members never split the six partitions\n{logs}"
    for i, (held, revoked) in enumerate(settled):
        others = set().union(*(h for j, (h, _) in enumerate(settled) if j != i))
        assert not revoked & held, f"c{i} revoked {sorted(revoked & held)} and got them back\n{logs}"
        assert revoked <= others, f"c{i} revoked {sorted(revoked - others)}, which did not move\n{logs}"
    assert settled[0][1], f"the first member gave up nothing, yet the others hold partitions\n{logs}"

    for w in members:
        assert w.wait(180) == 0, w.log()
    values = [r[2] for w in members for r in w.records()]
    assert sorted(values) == list(range(n)), (
        f"{len(values)} records, {len(set(values))} distinct, want each of {n} once\n{first.log()}")
    assert all(w.records() for w in later), "the members that joined later got nothing"


def test_static_member_restarts_without_a_rebalance(broker, tmp_path):
    """KIP-345: a member with group.instance.id that comes back within its session timeout gets
    its old partitions back, and the other member is not disturbed."""
    topic = make_topic(broker.bootstrap, 4)
    produce_n(broker.bootstrap, topic, 0, 400)
    group = f"static-{uuid.uuid4().hex[:6]}"
    steady = Worker(tmp_path, broker.bootstrap, topic, group, "steady",
                    "--instance-id", "steady", "--session-ms", "30000", "--idle-s", "25")
    a = Worker(tmp_path, broker.bootstrap, topic, group, "a1",
               "--instance-id", "a", "--session-ms", "30000", "--idle-s", "3")
    assert a.wait() == 0, a.log()
    # A static member's close does not leave the group (librdkafka sends no LeaveGroup for it).
    first_parts = {r[0] for r in a.records()}
    b = Worker(tmp_path, broker.bootstrap, topic, group, "a2",
               "--instance-id", "a", "--session-ms", "30000", "--idle-s", "3")
    time.sleep(1)
    produce_n(broker.bootstrap, topic, 400, 400)
    assert b.wait() == 0, b.log()
    assert steady.wait(60) == 0, steady.log()
    assert first_parts and {r[0] for r in b.records()} == first_parts, (first_parts, b.log())
    # One assignment, revoked only when it closes at the end.
    assert steady.log().count("assigned") == 1, "the static restart rebalanced the other member:\n" + steady.log()
    values = sorted(r[2] for w in (steady, a, b) for r in w.records())
    assert values == list(range(800)), f"{len(values)} records, {len(set(values))} distinct"


def test_kip848_consumer_protocol_members_share_the_partitions(broker_factory, tmp_path):
    """group.protocol=consumer (KIP-848, ConsumerGroupHeartbeat): the broker assigns; a member
    joining later gets partitions only after the first member revoked them; a killed member's
    partitions move after the session timeout; every record is consumed, duplicates only from
    the killed member's uncommitted tail."""
    b = broker_factory(extra_args=["--group-consumer-session-timeout-ms", "6000",
                                   "--group-consumer-heartbeat-interval-ms", "500"]).start()
    topic = make_topic(b.bootstrap, 6)
    n = 9_000
    produce_n(b.bootstrap, topic, 0, n)
    group = f"k848-{uuid.uuid4().hex[:6]}"
    args = ["--protocol", "consumer", "--delay-ms", "2", "--commit-every", "50", "--idle-s", "10"]
    first = Worker(tmp_path, b.bootstrap, topic, group, "n0", *args)
    deadline = time.monotonic() + 60
    while len(first.records()) < 300 and time.monotonic() < deadline:
        time.sleep(0.2)
    others = [Worker(tmp_path, b.bootstrap, topic, group, f"n{i}", *args) for i in (1, 2)]
    while len(others[0].records()) < 200 and time.monotonic() < deadline + 30:
        time.sleep(0.2)
    # skein's CLI describes a KIP-848 group through DescribeGroups like a classic one.
    r = subprocess.run([skein_bin(), "--bootstrap", b.bootstrap, "groups", "describe", group],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "uniform" in r.stdout and topic in r.stdout, r.stdout
    victim = others[0]
    victim.kill()
    for w in (first, others[1]):
        assert w.wait(180) == 0, w.log()
    ws = [first, *others]
    values = [r[2] for w in ws for r in w.records()]
    assert set(values) == set(range(n)), f"missing {len(set(range(n)) - set(values))}\n{first.log()}"
    killed_parts = {r[0] for r in victim.records()}
    assert len(values) - len(set(values)) <= 50 * len(killed_parts), "too many duplicates"
    assert others[1].records(), "the member that joined later got nothing"
    assert sum(committed(b.bootstrap, group, topic, 6).values()) == n
    a = AdminClient({"bootstrap.servers": b.bootstrap, **COMMON})
    listed = a.list_consumer_groups().result(30)
    assert group in {g.group_id for g in listed.valid}


def group_members(bootstrap, group):
    """(instance id, partitions) of every member, as DescribeGroups tells."""
    a = AdminClient({"bootstrap.servers": bootstrap, **COMMON})
    try:
        d = a.describe_consumer_groups([group])[group].result(30)
    except KafkaException:
        return []  # the coordinator is still loading
    return [(m.group_instance_id, sorted(tp.partition for tp in m.assignment.topic_partitions))
            for m in d.members]


def assigned(worker):
    """The partitions of the worker's last "assigned [...]" line."""
    lines = [l for l in worker.log().splitlines() if l.startswith("assigned [")]
    return [int(x) for x in lines[-1][len("assigned ["):-1].split(",") if x.strip()] if lines else []


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s")


def test_replaced_static_member_is_fenced(broker, tmp_path):
    """Issue 17 (KIP-345): consumer1 and consumer2 share a topic; a third process starts with
    group.instance.id=consumer2 while the old consumer2 still runs. The old one gets the fatal
    FENCED_INSTANCE_ID and stops within a few heartbeats (it used to go on for good, taking
    turns with the new one as the owner of its partitions); the partitions end with one owner
    each, and records produced after the replacement are read once, by consumer1 or the new
    consumer2."""
    topic = make_topic(broker.bootstrap, 4)
    produce_n(broker.bootstrap, topic, 0, 400)
    group = f"fence-{uuid.uuid4().hex[:6]}"
    static = ["--session-ms", "10000", "--idle-s", "20"]
    c1 = Worker(tmp_path, broker.bootstrap, topic, group, "consumer1",
                "--instance-id", "consumer1", *static)
    c2 = Worker(tmp_path, broker.bootstrap, topic, group, "consumer2",
                "--instance-id", "consumer2", *static)
    wait_for(lambda: sorted(p for _, ps in group_members(broker.bootstrap, group) for p in ps)
             == [0, 1, 2, 3] and "assigned [" in c2.log() and "assigned [" in c1.log(),
             60, "two static members sharing the partitions")
    old_parts = set(assigned(c2))
    c2b = Worker(tmp_path, broker.bootstrap, topic, group, "consumer2-new",
                 "--instance-id", "consumer2", *static)
    started = time.monotonic()
    try:
        code = c2.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError("the replaced consumer2 was not fenced within 30 s:\n" + c2.log())
    fenced_after = time.monotonic() - started
    assert code == 3, c2.log()
    # librdkafka's text for FENCED_INSTANCE_ID, in its _FATAL error.
    assert "fatal error: _FATAL" in c2.log(), c2.log()
    assert "Static consumer fenced by other consumer with same group.instance.id" in c2.log()
    wait_for(lambda: "assigned [" in c2b.log(), 30, "the new consumer2's assignment")
    produce_n(broker.bootstrap, topic, 400, 400)
    assert c1.wait(90) == 0, c1.log()
    assert c2b.wait(90) == 0, c2b.log()
    assert "fatal" not in c1.log() + c2b.log(), c1.log() + c2b.log()
    # After the replacement: each record once, each partition read by one process.
    later = [r for w in (c1, c2b) for r in w.records() if r[2] >= 400]
    assert sorted(r[2] for r in later) == list(range(400, 800)), \
        f"{len(later)} records, {len(set(r[2] for r in later))} distinct"
    c1_parts = {r[0] for r in c1.records() if r[2] >= 400}
    c2b_parts = {r[0] for r in c2b.records() if r[2] >= 400}
    assert not c1_parts & c2b_parts and c1_parts | c2b_parts == {0, 1, 2, 3}, (c1_parts, c2b_parts)
    assert old_parts and c2b_parts == old_parts, (old_parts, c2b_parts, c2b.log())
    print(f"old consumer2 fenced {fenced_after:.1f} s after the new one started")


def test_kip848_static_member_duplicate_is_refused_and_a_restart_takes_over(broker_factory,
                                                                             tmp_path):
    """Issue 17, KIP-848 (group.protocol=consumer): a second process with a live member's
    group.instance.id is refused with the fatal UNRELEASED_INSTANCE_ID and the live one keeps
    its partitions; once that one closes (a static member's temporary leave, epoch -2, keeps
    its place), a new process with its instance id takes its partitions over, and the other
    member's assignment never moves."""
    b = broker_factory(extra_args=["--group-consumer-session-timeout-ms", "30000",
                                   "--group-consumer-heartbeat-interval-ms", "500"]).start()
    topic = make_topic(b.bootstrap, 4)
    produce_n(b.bootstrap, topic, 0, 400)
    group = f"f848-{uuid.uuid4().hex[:6]}"
    args = ["--protocol", "consumer", "--idle-s", "15"]
    c1 = Worker(tmp_path, b.bootstrap, topic, group, "consumer1",
                "--instance-id", "consumer1", *args)
    c2 = Worker(tmp_path, b.bootstrap, topic, group, "consumer2",
                "--instance-id", "consumer2", *args)
    def shared():
        m = dict(group_members(b.bootstrap, group))
        c1_parts, c2_parts = m.get("consumer1", []), m.get("consumer2", [])
        return c1_parts and c2_parts and sorted(c1_parts + c2_parts) == [0, 1, 2, 3]
    wait_for(shared, 60, "two static members sharing the partitions")
    before = dict(group_members(b.bootstrap, group))
    dup = Worker(tmp_path, b.bootstrap, topic, group, "consumer2-dup",
                 "--instance-id", "consumer2", *args)
    assert dup.wait(30) == 3, dup.log()
    assert "fatal error: _FATAL" in dup.log(), dup.log()
    # librdkafka's text for UNRELEASED_INSTANCE_ID.
    assert "The instance ID is still used by another member" in dup.log(), dup.log()
    assert dict(group_members(b.bootstrap, group)) == before
    assert c2.proc.poll() is None, "the live consumer2 stopped:\n" + c2.log()
    c2.proc.send_signal(signal.SIGTERM)
    assert c2.wait(30) == 0, c2.log()
    # Closed, the static member keeps its place and partitions (epoch -2) for its session.
    assert dict(group_members(b.bootstrap, group)).get("consumer2") == before["consumer2"]
    c2b = Worker(tmp_path, b.bootstrap, topic, group, "consumer2-new",
                 "--instance-id", "consumer2", *args)
    wait_for(lambda: assigned(c2b), 30, "the restarted consumer2's partitions")
    assert sorted(assigned(c2b)) == before["consumer2"], c2b.log()
    produce_n(b.bootstrap, topic, 400, 400)
    assert c1.wait(90) == 0, c1.log()
    assert c2b.wait(90) == 0, c2b.log()
    c1_parts = {r[0] for r in c1.records() if r[2] >= 400}
    c2b_parts = {r[0] for r in c2b.records() if r[2] >= 400}
    assert c1_parts == set(before["consumer1"]) and c2b_parts == set(before["consumer2"]), \
        (before, c1_parts, c2b_parts)
    later = sorted(r[2] for w in (c1, c2b) for r in w.records() if r[2] >= 400)
    assert later == list(range(400, 800)), f"{len(later)} records, {len(set(later))} distinct"
