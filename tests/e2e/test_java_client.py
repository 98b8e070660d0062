"""The Java client (org.apache.kafka:kafka-clients 4.x, the client most Kafka applications use)
against skein.

tests/java/ is a small Maven module (ci/setup.sh builds it into target/java/); each test runs one
of its scenarios in one JVM (dev.skein.e2e.Main SCENARIO BOOTSTRAP ...) and checks the JSON
report it prints: the records, offsets, assignments and errors the client saw.

- producer: defaults (idempotent, acks=all) under every codec, keys, headers, explicit
  timestamps; read back exactly by the Java consumer, and the broker's log holds batches of that
  codec with a producer id;
- consumer groups: the classic protocol with range (eager) and cooperative-sticky (incremental:
  a member joining takes partitions without the other giving up the ones it keeps), KIP-848
  (group.protocol=consumer), static membership (a restart without a rebalance; a replaced
  instance fenced);
- the Admin client: topics, partitions, configs, the cluster and its quorum, ListOffsets,
  groups and their offsets;
- a three-broker cluster (replication factor 3): the Admin client after a broker is killed; the
  group's coordinator, which also leads a
  partition, is killed while an acks=all producer and a group member run; nothing acknowledged
  is lost.
"""

import json
import os
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import REPO_ROOT
from helpers import unique_topic
from storage import stored_batches

JAVA_DIR = os.path.join(REPO_ROOT, "target", "java")
JAR = os.path.join(JAVA_DIR, "skein-java-e2e.jar")
CLASSPATH = os.path.join(JAVA_DIR, "classpath.txt")

# Short group timers so rebalances take a second, not the defaults' several.
GROUP_ARGS = [
    "--group-initial-rebalance-delay-ms",
    "300",
    "--group-consumer-heartbeat-interval-ms",
    "500",
]


def java_argv(*args):
    if not (os.path.exists(JAR) and os.path.exists(CLASSPATH)):
        pytest.fail(
            f"the Java client driver is not built ({JAR}): run ./ci/setup.sh", pytrace=False
        )
    with open(CLASSPATH) as f:
        cp = f.read().strip()
    return [
        "java",
        # A short-lived client program on a 2-core machine: quick start-up, one GC thread.
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "-Xmx256m",
        "-cp",
        f"{JAR}:{cp}",
        "dev.skein.e2e.Main",
        *args,
    ]


def parse(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def run_java(*args, timeout=100):
    t0 = time.monotonic()
    r = subprocess.run(java_argv(*args), capture_output=True, text=True, timeout=timeout)
    lines = parse(r.stdout)
    ok = r.returncode == 0 and lines and "report" in lines[-1]
    assert ok, (
        f"java {' '.join(args)} exited {r.returncode} after {time.monotonic() - t0:.1f}s\n"
        f"--- stdout ---\n{r.stdout[-6000:]}\n--- stderr ---\n{r.stderr[-8000:]}"
    )
    return lines[-1]["report"]


def events(log, member, after=None, until=None):
    """The callbacks of `member` in the report's log, between the marks `after` and `until`."""
    out = []
    on = after is None
    for e in log:
        if "mark" in e:
            if e["mark"] == after:
                on = True
            elif e["mark"] == until:
                on = False
            continue
        if on and e["member"] == member:
            out.append((e["event"], e.get("partitions")))
    return out


# --- the producer -----------------------------------------------------------------------------


def test_java_producer_every_codec_keys_headers_timestamps_read_back(broker):
    prefix = unique_topic("java-produce")
    report = run_java("produce", broker.bootstrap, prefix, "300")
    # No transactions in skein: a transactional producer is told so at once (FindCoordinator for
    # its transactional id), not left to time out.
    tx = report.pop("transactions")
    assert tx["error"] == "KafkaException" and "transactions are not supported" in tx["message"], tx
    assert tx["ms"] < 5000, tx
    assert set(report) == {"none", "gzip", "snappy", "lz4", "zstd"}
    for codec, r in report.items():
        sent, got = r["sent"], r["received"]
        assert len(sent) == 300
        # Acknowledged where it was sent, with the timestamp it was given (CreateTime).
        for s in sent:
            assert s["acked_partition"] == s["partition"], (codec, s)
            assert s["acked_timestamp"] == s["timestamp"], (codec, s)
        for p in range(2):
            assert [s["offset"] for s in sent if s["partition"] == p] == list(range(150)), codec
        want = sorted(
            (
                (s["partition"], s["offset"], s["key"], s["value"], s["timestamp"], s["headers"])
                for s in sent
            ),
        )
        have = sorted(
            (g["partition"], g["offset"], g.get("key"), g.get("value"), g.get("timestamp"), g.get("headers"))
            for g in got
        )
        assert have == want, f"{codec}: the records read back differ from those sent"
        assert {g["timestamp_type"] for g in got} == {"CreateTime"}
        assert {g["leader_epoch"] for g in got} == {0}
        # Null keys, null values, a null header value and repeated header keys came back as sent.
        assert any(g["key"] is None for g in got) and any(g["value"] is None for g in got)
        assert ["nullh", None] in got[1]["headers"] or ["nullh", None] in got[2]["headers"]
        # The broker stored the client's batches as produced: this codec, and a producer id
        # (the client is idempotent by default), several records per batch.
        for p in range(2):
            batches = stored_batches(broker.data_dir, r["topic"], p)
            assert batches, (codec, p)
            assert {b["codec"] for b in batches} == {codec}, (codec, p, batches[:3])
            assert all(b["producer_id"] >= 0 for b in batches), (codec, batches[:3])
            assert len({b["producer_id"] for b in batches}) == 1
            assert sum(b["count"] for b in batches) == 150
            assert len(batches) < 150, "linger.ms=20 should put several records in a batch"


# --- consumer groups --------------------------------------------------------------------------


def check_group_report(report, protocol):
    log = report["log"]
    assert report["a_commit_one"] == "ok"
    assert report["a_commit_two"] == "ok" and report["b_commit_two"] == "ok"
    assert report["a_fatal"] is None and report["b_fatal"] is None
    a_split, b_split = report["a_owned_split"], report["b_owned_split"]
    assert sorted(a_split + b_split) == [0, 1, 2, 3] and len(a_split) == len(b_split) == 2

    # Every record read exactly once, by the member owning its partition then.
    def keyed(records):
        return [(r["partition"], r["offset"], r["key"]) for r in records]

    a_recs, b_recs = keyed(report["a_records"]), keyed(report["b_records"])
    assert len(set(a_recs + b_recs)) == len(a_recs) + len(b_recs) == 80, "a record was read twice or lost"
    one = [k for k in a_recs if k[2].startswith("one-")]
    assert len(one) == 40 and not [k for k in b_recs if k[2].startswith("one-")]
    for p, _, key in a_recs + b_recs:
        assert key.startswith(("one-p%d-" % p, "two-p%d-" % p))
    assert {p for p, _, k in b_recs if k.startswith("two-")} == set(b_split)
    assert {p for p, _, k in a_recs if k.startswith("two-")} == set(a_split)

    # Committed offsets: the log end of every partition (10 + 10 records each).
    assert report["committed_split"] == {str(p): 20 for p in range(4)}

    # What each member gave up when B joined.
    a_join = events(log, "A", after="B joins", until="split")
    b_join = events(log, "B", after="B joins", until="split")
    revoked = sorted(p for ev, ps in a_join if ev == "revoked" for p in ps)
    assert not [e for e in a_join + b_join if e[0] == "lost"], (a_join, b_join)
    if protocol == "range":
        # Eager: A gives up everything, then gets its half back.
        assert a_join[0] == ("revoked", [0, 1, 2, 3]), a_join
        assert a_join[-1] == ("assigned", a_split), a_join
    else:
        # Incremental (cooperative-sticky, KIP-848): A gives up only what moves to B.
        assert revoked == sorted(b_split), a_join
        assert sorted(p for ev, ps in b_join if ev == "assigned" for p in ps) == sorted(b_split), b_join

    d = report["describe_split"]
    members = {m["client_id"]: m for m in d["members"]}
    assert set(members) == {"A", "B"}, d
    assert members["A"]["assignment"] == a_split and members["B"]["assignment"] == b_split, d
    assert d["state"] == "Stable", d
    assert d["coordinator"] == 1
    if protocol == "consumer":
        assert d["type"] == "Consumer", d
        assert all(m["member_epoch"] is not None and m["member_epoch"] > 0 for m in d["members"]), d
        assert d["assignor"] == "uniform" and d["group_epoch"] >= 2, d
    else:
        assert d["type"] == "Classic", d
        assert d["assignor"] == protocol, d

    # B leaves: A takes every partition back, without giving any of its own up.
    a_leave = events(log, "A", after="B leaves", until="A leaves")
    assert report["a_owned_after_leave"] == [0, 1, 2, 3]
    assert not [e for e in a_leave if e[0] == "lost"], a_leave
    if protocol != "range":
        assert not [e for e in a_leave if e[0] == "revoked" and e[1]], a_leave
    assert [m["client_id"] for m in report["describe_after_leave"]["members"]] == ["A"]
    assert report["describe_empty"]["members"] == []
    assert report["describe_empty"]["state"] == "Empty", report["describe_empty"]


@pytest.mark.parametrize("protocol", ["range", "cooperative-sticky", "consumer"])
def test_java_consumer_group_two_members(broker_factory, protocol):
    """Classic groups with the eager range and the incremental cooperative-sticky assignors,
    and a KIP-848 group (group.protocol=consumer, assigned by the broker)."""
    broker = broker_factory(extra_args=GROUP_ARGS).start()
    topic = unique_topic(f"java-group-{protocol}")
    report = run_java("group", broker.bootstrap, topic, protocol)
    check_group_report(report, protocol)


def test_java_static_member_restarts_without_a_rebalance(broker_factory):
    broker = broker_factory(extra_args=GROUP_ARGS).start()
    report = run_java("static", broker.bootstrap, unique_topic("java-static"), "restart")
    log = report["log"]
    instances = sorted(m["instance_id"] for m in report["describe_stable"]["members"])
    assert instances == ["s1", "s2"], report["describe_stable"]
    # The new process with s2's instance id gets s2's partitions at the same generation, and s1
    # sees nothing at all.
    assert report["s2b_owned"] == report["s2_owned"]
    assert report["s1_owned_after"] == report["s1_owned"]
    assert report["s1_generation_after"] == report["s1_generation"]
    assert report["s2b_generation"] == report["s1_generation"]
    assert events(log, "s1", after="s2 restarts") == []
    assert report["s1_fatal"] is None and report["s2b_fatal"] is None
    after = {m["instance_id"]: m for m in report["describe_after"]["members"]}
    assert set(after) == {"s1", "s2"}
    assert after["s2"]["client_id"] == "s2-again" and after["s2"]["assignment"] == report["s2_owned"]


def test_java_replaced_static_member_is_fenced(broker_factory):
    broker = broker_factory(extra_args=GROUP_ARGS).start()
    report = run_java("static", broker.bootstrap, unique_topic("java-fence"), "fence")
    assert report["s1_fatal"] == "FencedInstanceIdException", report
    assert report["s1b_fatal"] is None
    assert report["s1b_owned"] == report["s1_owned"]
    assert report["s2_owned_after"] == report["s2_owned"]
    after = {m["instance_id"]: m for m in report["describe_after"]["members"]}
    assert after["s1"]["client_id"] == "s1-new", report["describe_after"]


# --- the Admin client -------------------------------------------------------------------------


def test_java_admin_client(broker_factory):
    broker = broker_factory(extra_args=GROUP_ARGS).start()
    prefix = unique_topic("java-admin")
    r = run_java("admin", broker.bootstrap, prefix)
    topic = prefix + "-main"

    # Topics: created once; refused with the error Kafka gives for each bad request.
    assert r["create"] == "ok"
    assert r["create_again"] == "TopicExistsException"
    assert r["create_compact"] == "ok"
    assert r["create_unknown_config"] == "InvalidConfigurationException"
    assert r["create_bad_name"] == "InvalidTopicException"
    assert r["create_rf_too_big"] == "InvalidReplicationFactorException"
    assert r["create_validate_only"] == "ok"
    assert r["listed"] and r["listed_compact"] and not r["listed_dry_run"] and not r["listed_failed"]
    d = r["describe_topic"]
    assert d["name"] == topic and not d["internal"] and d["topic_id"] != "AAAAAAAAAAAAAAAAAAAAAA"
    assert [(p["partition"], p["leader"], p["replicas"], p["isr"]) for p in d["partitions"]] == [
        (p, 1, [1], [1]) for p in range(3)
    ]
    assert r["describe_missing"] == "UnknownTopicOrPartitionException"
    assert r["partitions_to_5"] == "ok" and r["partitions_after"] == 5
    assert r["partitions_to_4"] == "InvalidPartitionsException"
    assert r["partitions_same"] == "InvalidPartitionsException"
    assert r["partitions_missing"] == "UnknownTopicOrPartitionException"

    # Configs: what CreateTopics set is a dynamic topic config; incrementalAlterConfigs SETs and
    # DELETEs (back to the default); bad keys and values are refused.
    c = r["configs"]
    assert c["retention.ms"] == {"value": "3600000", "source": "DYNAMIC_TOPIC_CONFIG", "read_only": False, "sensitive": False}
    assert c["max.message.bytes"]["value"] == "2000000" and c["max.message.bytes"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    assert c["segment.bytes"]["source"] == "DEFAULT_CONFIG" and c["cleanup.policy"]["value"] == "delete"
    assert r["alter_set_delete"] == "ok"
    a = r["configs_after"]
    assert (a["retention.ms"]["value"], a["retention.ms"]["source"]) == ("7200000", "DYNAMIC_TOPIC_CONFIG")
    assert (a["segment.bytes"]["value"], a["segment.bytes"]["source"]) == ("2097152", "DYNAMIC_TOPIC_CONFIG")
    assert (a["max.message.bytes"]["value"], a["max.message.bytes"]["source"]) == ("1048588", "DEFAULT_CONFIG")
    assert r["alter_unknown_key"] == "InvalidConfigurationException"
    assert r["alter_bad_value"] == "InvalidConfigurationException"
    assert r["alter_missing_topic"] == "UnknownTopicOrPartitionException"

    # The cluster, the broker's configs and the metadata quorum (one voter: this broker).
    assert r["cluster"]["nodes"] == [1] and r["cluster"]["controller"] == 1 and r["cluster"]["id"]
    assert r["broker_config_count"] > 5
    assert r["broker_config_sample"]["log.retention.ms"]["value"] == "604800000"
    assert r["broker_config_sample"]["num.partitions"]["value"] == "1"
    q = r["quorum"]
    assert q["leader"] == 1 and q["epoch"] >= 1 and q["observers"] == 0, q
    assert [v["id"] for v in q["voters"]] == [1] and q["voters"][0]["log_end_offset"] == q["high_watermark"] > 0, q

    # ListOffsets over 20 records at base, base + 1 s, ... (but record 13 at base + 50 s)
    base = r["offsets_base"]
    assert r["offset_earliest"]["offset"] == 0
    assert r["offset_latest"]["offset"] == 20
    assert (r["offset_by_time_mid"]["offset"], r["offset_by_time_mid"]["timestamp"]) == (6, base + 6000)
    assert (r["offset_by_time_exact"]["offset"], r["offset_by_time_exact"]["timestamp"]) == (7, base + 7000)
    assert (r["offset_by_time_before"]["offset"], r["offset_by_time_before"]["timestamp"]) == (0, base)
    assert r["offset_by_time_after"]["offset"] == -1
    assert r["offset_empty_partition_latest"]["offset"] == 0
    assert {
        r[k]["leader_epoch"]
        for k in r
        if k.startswith("offset_") and k not in ("offsets_base", "offset_by_time_after") and "error" not in r[k]
    } == {0}
    # No record at or after the time: no leader epoch, as Kafka answers (-1 on the wire).
    assert r["offset_by_time_after"]["leader_epoch"] in (None, -1), r["offset_by_time_after"]
    # OffsetSpec.maxTimestamp() (ListOffsets v7, KIP-734): the record with the largest
    # timestamp, record 13 at base + 50 s.
    assert (r["offset_max_timestamp"].get("offset"), r["offset_max_timestamp"].get("timestamp")) == (
        13,
        base + 50000,
    ), r["offset_max_timestamp"]

    # A group that only committed (no members): listed and described as an empty classic group.
    group = prefix + "-group"
    assert r["groups_listed"] == [
        {"group": group, "type": "Classic", "protocol": "", "state": "Empty", "simple": True}
    ]
    gd = r["group_describe"]
    assert (gd["state"], gd["type"], gd["members"], gd["coordinator"]) == ("Empty", "Classic", [], 1), gd
    assert r["group_offsets"] == {"0": 12, "1": 0}
    assert r["alter_offsets"] == "ok"
    assert r["group_offsets_altered"] == {"0": 3, "1": 0}
    assert r["group_offset_metadata"] == "moved"
    assert r["delete_offsets"] == "ok" and r["group_offsets_deleted"] == {"1": 0}
    assert r["delete_group"] == "ok"
    assert r["delete_group_again"] == "GroupIdNotFoundException"
    assert r["groups_listed_after_delete"] == [] and r["group_offsets_after_delete"] == {}
    # DescribeGroups v6 names an unknown group GROUP_ID_NOT_FOUND (KIP-1043), as Kafka 4 does.
    assert r["describe_deleted_group"] == {"error": "GroupIdNotFoundException"}

    # Admin calls over APIs skein does not serve fail at once with UnsupportedVersionException
    # (the client reads ApiVersions), not by timing out.
    assert r["unserved"] == {
        "describeAcls": "UnsupportedVersionException",
        "describeClientQuotas": "UnsupportedVersionException",
        "describeFeatures": "ok",
        "describeLogDirs": "UnsupportedVersionException",
        "describeProducers": "UnsupportedVersionException",
        "electLeaders": "UnsupportedVersionException",
        "listPartitionReassignments": "UnsupportedVersionException",
        "listTransactions": "UnsupportedVersionException",
    }, r["unserved"]

    assert r["delete_topic"] == "ok"
    assert r["delete_topic_again"] == "UnknownTopicOrPartitionException"
    assert r["describe_deleted_topic"] == "UnknownTopicOrPartitionException"


# --- a three-broker cluster -------------------------------------------------------------------

CLUSTER_ARGS = [
    "--broker-session-timeout-ms",
    "2000",
    "--broker-heartbeat-interval-ms",
    "300",
    "--replica-lag-time-max-ms",
    "3000",
    *GROUP_ARGS,
]


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_java_producer_and_group_member_ride_out_a_broker_kill(cluster_factory, protocol):
    """Replication factor 3, min.insync.replicas=2: kill -9 the broker coordinating the group
    (it leads one of the three partitions too) while an idempotent acks=all producer sends and
    a group member (classic, or KIP-848) reads. Every acknowledged record is read, at the offset
    the producer was told, in order; nothing fails. (A KIP-848 member loses its partitions and
    rejoins after the coordinator moves, as skein keeps that membership in memory only: it may
    read records again from its last commit.)"""
    nodes = cluster_factory(3, CLUSTER_ARGS)
    bootstrap = ",".join(b.bootstrap for b in nodes)
    topic = unique_topic("java-cluster")
    proc = subprocess.Popen(
        java_argv("cluster", bootstrap, topic, "900", protocol),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        for line in proc.stdout:
            if line.startswith("{"):
                lines.append(json.loads(line))
                if lines[-1].get("event") == "ready" or "fatal" in lines[-1]:
                    break
        ready = lines[-1] if lines else {}
        assert ready.get("event") == "ready", f"no ready line: {lines}\n{proc.stderr.read()[-6000:] if proc.poll() is not None else ''}"
        leaders = {int(p): n for p, n in ready["leaders"].items()}
        assert sorted(leaders.values()) == [1, 2, 3], ready  # one partition led by each broker
        # describeCluster and describeMetadataQuorum: three brokers, three voters, the
        # controller is the quorum leader.
        cl = ready["cluster"]
        assert cl["nodes"] == [1, 2, 3] and cl["voters"] == [1, 2, 3], cl
        assert cl["controller"] == cl["quorum_leader"] in (1, 2, 3), cl
        victim_id = ready["coordinator"]
        assert victim_id in (1, 2, 3), ready
        victim = next(b for b in nodes if b.node_id == victim_id)
        victim.kill9()
        proc.stdin.write("killed\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines += parse(out)
    assert proc.returncode == 0 and "report" in lines[-1], f"exit {proc.returncode}\n{out[-4000:]}\n{err[-8000:]}"
    r = lines[-1]["report"]
    print("killed", victim_id, "ready", ready, "after", r["leaders_after"], r["cluster_after"], r["log"])
    assert r["errors"] == [], r["errors"][:5]
    assert r["reader_fatal"] is None
    acked, read = r["acked"], r["read"]
    assert sum(len(v) for v in acked.values()) == 900
    after = r["cluster_after"]
    assert after["nodes"] == sorted(b.node_id for b in nodes if b is not victim), after
    assert after["voters"] == [1, 2, 3] and after["controller"] == after["quorum_leader"] != victim_id, after
    moved = [p for p, n in leaders.items() if n == victim_id]
    assert {int(p): n for p, n in r["leaders_after"].items()}[moved[0]] != victim_id
    for p in ("0", "1", "2"):
        want = sorted((o, v) for o, v in acked[p])
        # Offsets the producer was told: contiguous from 0 (no duplicate written by a retry).
        assert [o for o, _ in want] == list(range(300)), p
        # The values in the order they were sent (m0, m3, m6, ... for partition 0).
        assert [v for _, v in want] == [f"m{i}" for i in range(int(p), 900, 3)], p
        got = [tuple(x) for x in read.get(p, [])]
        assert sorted(set(got)) == want, f"partition {p}: read differs from acknowledged"
        # Read in order; a record read twice only after the group moved the partition.
        if len(got) != len(set(got)):
            assert [e for e in r["log"] if e.get("event") in ("revoked", "lost")], r["log"]
        assert [o for o, _ in dict.fromkeys(got)] == list(range(300)), p


def test_java_admin_client_on_a_cluster_with_a_broker_killed(cluster_factory):
    """The Admin client's whole scenario (topics, partitions, configs, cluster, quorum, offsets,
    groups) against a three-broker cluster after `kill -9` of node 3 (the quorum keeps two of
    its three voters): every call is answered by the two brokers left, and what they describe
    is the cluster as it now is (two live brokers, three voters)."""
    nodes = cluster_factory(3, CLUSTER_ARGS)
    # __consumer_offsets (replication factor 3) is created on first use, which needs three live
    # brokers, in skein as in Kafka: a group commits once before the kill.
    warm = unique_topic("java-admin-warm")
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    admin.create_topics([NewTopic(warm, 1, 3)])[warm].result(30)
    c = Consumer({"bootstrap.servers": nodes[0].bootstrap, "group.id": warm})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                c.commit(offsets=[TopicPartition(warm, 0, 1)], asynchronous=False)
                break
            except KafkaException:
                assert time.monotonic() < deadline, "no group coordinator within 60 s"
                time.sleep(0.5)
    finally:
        c.close()
    # ... and every one of its partitions has all three replicas in sync, so a partition led by
    # the killed broker gets a new leader (no unclean election, as in Kafka).
    deadline = time.monotonic() + 60
    while True:
        parts = admin.list_topics("__consumer_offsets", timeout=10).topics["__consumer_offsets"].partitions
        if parts and all(len(p.isrs) == 3 for p in parts.values()):
            break
        assert time.monotonic() < deadline, "__consumer_offsets not fully in sync within 60 s"
        time.sleep(0.5)
    victim = next(b for b in nodes if b.node_id == 3)
    victim.kill9()
    survivors = ",".join(b.bootstrap for b in nodes[:2])
    time.sleep(3)  # the broker session timeout (2 s): the controller fences the dead broker
    prefix = unique_topic("java-admin-killed")
    r = run_java("admin", survivors, prefix)
    assert r["create"] == "ok" and r["create_again"] == "TopicExistsException"
    # Replication factor 3 with two live brokers is refused, as Kafka refuses it.
    assert r["create_rf_too_big"] == "InvalidReplicationFactorException"
    d = r["describe_topic"]
    assert all(p["leader"] in (1, 2) for p in d["partitions"]), d
    assert r["partitions_to_5"] == "ok" and r["partitions_after"] == 5
    assert r["alter_set_delete"] == "ok"
    assert sorted(r["cluster"]["nodes"]) == [1, 2], r["cluster"]
    assert sorted(v["id"] for v in r["quorum"]["voters"]) == [1, 2, 3], r["quorum"]
    assert r["offset_latest"]["offset"] == 20 and r["offset_by_time_exact"]["offset"] == 7
    assert r["group_offsets"] == {"0": 12, "1": 0} and r["delete_group"] == "ok"
    assert r["delete_topic"] == "ok"
