"""Apache Kafka's own command-line tools (4.x, resolved from Maven Central by ci/kafka.sh) against
skein, and one real Apache Kafka broker started by ci/kafka.sh.

Behaviour asserted (what each tool prints against Apache Kafka, checked by hand against a
Kafka 4.4.0 broker started with `ci/kafka.sh start-broker`):
- kafka-topics: create with partitions and configs, list, describe (partition count,
  replication factor, the configs set, each partition's leader/replicas/ISR), alter partitions,
  delete; an existing name is refused with "already exists";
- kafka-configs: describe a topic's dynamic configs and all of them, alter (add and delete in
  one call), describe the broker;
- kafka-consumer-groups: list, describe with the committed offsets, log end offsets and lag of a
  confluent-kafka consumer (and its member id), --members and --state, reset-offsets refused while
  the group has members, then --to-earliest --execute, delete;
- kafka-console-producer / kafka-console-consumer: keyed records round trip (and confluent-kafka
  reads the keys the Java producer wrote);
- kafka-get-offsets: latest, earliest and by-time offsets per partition;
- kafka-metadata-quorum describe --status / --replication: skein's one-voter quorum, and a
  three-voter one asked through each broker (non-leaders relay DescribeQuorum to the leader);
- kafka-broker-api-versions: every API skein lists, with its version range.
Each JVM start costs about 1-2 s on 2 cores; the file takes about a minute.
"""

import os
import re
import subprocess
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from conftest import REPO_ROOT, free_port
from helpers import COMMON, flush_all, producer, unique_topic

KAFKA_SH = os.path.join(REPO_ROOT, "ci", "kafka.sh")


def tool(name, *args, input=None, timeout=60):
    """Run one of Kafka's tools (ci/kafka.sh tool NAME ARGS...); returns the CompletedProcess."""
    r = subprocess.run(
        [KAFKA_SH, "tool", name, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    assert "[ci/kafka] FAILED" not in r.stderr, f"ci/kafka.sh could not run {name}:\n{r.stderr}"
    return r


def ok(name, *args, **kw):
    r = tool(name, *args, **kw)
    assert r.returncode == 0, (
        f"{name} {' '.join(args)} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    )
    return r.stdout


def fails(name, *args, **kw):
    """A tool run that must fail cleanly: the (stdout + stderr) text."""
    r = tool(name, *args, **kw)
    text = r.stdout + r.stderr
    assert r.returncode != 0 or "Error" in text, f"{name} {' '.join(args)} did not fail:\n{text}"
    return text


def tab_fields(line):
    """'Topic: t\tPartition: 0\tLeader: 1' -> {'Topic': 't', 'Partition': '0', 'Leader': '1'}."""
    out = {}
    for cell in line.strip().split("\t"):
        k, _, v = cell.partition(":")
        out[k.strip()] = v.strip()
    return out


def describe_topic(bs, topic):
    """(topic fields, [partition fields]) from kafka-topics --describe."""
    text = ok("kafka-topics", "--bootstrap-server", bs, "--describe", "--topic", topic)
    lines = [line for line in text.splitlines() if line.strip()]
    head = [tab_fields(line) for line in lines if not line.startswith("\t")]
    parts = [tab_fields(line) for line in lines if line.startswith("\t")]
    assert len(head) == 1, text
    return head[0], parts


def configs_of(text):
    """{'retention.ms': '5000', ...} from kafka-configs --describe (lines '  k=v sensitive=...')."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s+([\w.]+)=(\S*) sensitive=(true|false) synonyms=\{(.*)\}$", line)
        if m:
            out[m.group(1)] = (m.group(2), m.group(4))
    return out


def table(text, header_start):
    """Rows (split on whitespace) of the table whose header starts with `header_start`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            rows = []
            for row in lines[i + 1:]:
                if not row.strip():
                    break
                rows.append(row.split())
            return rows
    raise AssertionError(f"no table starting {header_start!r} in:\n{text}")


def test_kafka_topics_and_configs(broker):
    bs = broker.bootstrap
    topic = unique_topic("kt")
    out = ok(
        "kafka-topics", "--bootstrap-server", bs, "--create", "--topic", topic,
        "--partitions", "3", "--config", "retention.ms=86400000", "--config", "max.message.bytes=3000",
    )
    assert f"Created topic {topic}." in out

    assert topic in ok("kafka-topics", "--bootstrap-server", bs, "--list").split()

    head, parts = describe_topic(bs, topic)
    assert head["Topic"] == topic
    assert head["PartitionCount"] == "3" and head["ReplicationFactor"] == "1", head
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", head["TopicId"]), head
    assert set(head["Configs"].split(",")) == {"retention.ms=86400000", "max.message.bytes=3000"}, head
    assert sorted(int(p["Partition"]) for p in parts) == [0, 1, 2]
    for p in parts:
        assert (p["Topic"], p["Leader"], p["Replicas"], p["Isr"]) == (topic, "1", "1", "1"), p
        # skein does not serve DescribeTopicPartitions (KIP-966's ELR there): the tool falls back
        # to Metadata and prints N/A where Kafka prints an empty ELR list.
        assert p["Elr"] == "N/A", p

    # A second create of the same name is refused (TOPIC_ALREADY_EXISTS).
    text = fails("kafka-topics", "--bootstrap-server", bs, "--create", "--topic", topic, "--partitions", "1")
    assert "already exists" in text, text

    ok("kafka-topics", "--bootstrap-server", bs, "--alter", "--topic", topic, "--partitions", "5")
    head, parts = describe_topic(bs, topic)
    assert head["PartitionCount"] == "5" and len(parts) == 5, (head, parts)

    # kafka-configs: the dynamic (set) configs, with their synonyms.
    out = ok("kafka-configs", "--bootstrap-server", bs, "--describe", "--entity-type", "topics", "--entity-name", topic)
    assert f"Dynamic configs for topic {topic} are:" in out, out
    cfg = configs_of(out)
    assert cfg == {
        "retention.ms": ("86400000", "DYNAMIC_TOPIC_CONFIG:retention.ms=86400000"),
        "max.message.bytes": ("3000", "DYNAMIC_TOPIC_CONFIG:max.message.bytes=3000"),
    }, out

    out = ok(
        "kafka-configs", "--bootstrap-server", bs, "--alter", "--entity-type", "topics", "--entity-name", topic,
        "--add-config", "retention.ms=5000,segment.bytes=2000000", "--delete-config", "max.message.bytes",
    )
    assert f"Completed updating config for topic {topic}." in out, out
    out = ok(
        "kafka-configs", "--bootstrap-server", bs, "--describe", "--entity-type", "topics", "--entity-name", topic, "--all",
    )
    cfg = configs_of(out)
    assert cfg["retention.ms"][0] == "5000" and cfg["segment.bytes"][0] == "2000000", out
    assert cfg["max.message.bytes"] == ("1048588", "DEFAULT_CONFIG:max.message.bytes=1048588"), out
    assert cfg["cleanup.policy"][0] == "delete" and cfg["min.insync.replicas"][0] == "1", out

    # An unknown config is refused with INVALID_CONFIG, and nothing changes.
    text = fails(
        "kafka-configs", "--bootstrap-server", bs, "--alter", "--entity-type", "topics", "--entity-name", topic,
        "--add-config", "no.such.config=1",
    )
    assert "InvalidConfigurationException" in text or "InvalidRequestException" in text, text

    # The broker: no dynamic configs; --all lists its static settings.
    out = ok("kafka-configs", "--bootstrap-server", bs, "--describe", "--entity-type", "brokers", "--entity-name", "1")
    assert out.strip() == "Dynamic configs for broker 1 are:", out
    out = ok(
        "kafka-configs", "--bootstrap-server", bs, "--describe", "--entity-type", "brokers", "--entity-name", "1", "--all",
    )
    cfg = configs_of(out)
    assert cfg["broker.id"][0] == "1" and cfg["message.max.bytes"][0] == "1048588", out

    ok("kafka-topics", "--bootstrap-server", bs, "--delete", "--topic", topic)
    assert topic not in ok("kafka-topics", "--bootstrap-server", bs, "--list").split()


def test_console_producer_consumer_and_get_offsets(broker, tmp_path):
    bs = broker.bootstrap
    topic = unique_topic("kcp")
    ok("kafka-topics", "--bootstrap-server", bs, "--create", "--topic", topic, "--partitions", "2")
    records = [(f"key-{i}", f"value {i}") for i in range(20)]
    ok(
        "kafka-console-producer", "--bootstrap-server", bs, "--topic", topic,
        "--reader-property", "parse.key=true", "--reader-property", "key.separator=|",
        input="".join(f"{k}|{v}\n" for k, v in records),
    )

    out = ok(
        "kafka-console-consumer", "--bootstrap-server", bs, "--topic", topic, "--from-beginning",
        "--max-messages", str(len(records)), "--timeout-ms", "20000",
        "--formatter-property", "print.key=true", "--formatter-property", "print.partition=true",
        "--formatter-property", "key.separator=|",
    )
    got = []
    for line in out.splitlines():
        # "Partition:1|key-3|value 3" (print.partition puts the partition first)
        m = re.fullmatch(r"Partition:(\d+)\|([^|]*)\|(.*)", line)
        assert m, f"unexpected console-consumer line {line!r} in:\n{out}"
        got.append((int(m.group(1)), m.group(2), m.group(3)))
    assert sorted((k, v) for _, k, v in got) == sorted(records), out
    per_partition = {p: sum(1 for q, _, _ in got if q == p) for p in (0, 1)}
    # The Java producer's default partitioner hashes keys (murmur2): both partitions get some.
    assert per_partition[0] > 0 and per_partition[1] > 0, per_partition
    # A key always lands on one partition.
    assert len({(k, p) for p, k, _ in got}) == len(records)

    # kafka-get-offsets: latest (the default) and earliest (-2), per partition.
    out = ok("kafka-get-offsets", "--bootstrap-server", bs, "--topic", topic)
    latest = {line.rsplit(":", 2)[1]: int(line.rsplit(":", 2)[2]) for line in out.split()}
    assert latest == {"0": per_partition[0], "1": per_partition[1]}, out
    out = ok("kafka-get-offsets", "--bootstrap-server", bs, "--topic", topic, "--time", "-2")
    assert sorted(out.split()) == [f"{topic}:0:0", f"{topic}:1:0"], out
    # By time: the first record at or after time 0 is each partition's first.
    out = ok("kafka-get-offsets", "--bootstrap-server", bs, "--topic", topic, "--time", "0")
    assert sorted(out.split()) == [f"{topic}:0:0", f"{topic}:1:0"], out
    # The record with the largest timestamp (-3, ListOffsets v7): one per partition, none skipped.
    out = ok("kafka-get-offsets", "--bootstrap-server", bs, "--topic", topic, "--time", "-3")
    maxts = {line.rsplit(":", 2)[1]: int(line.rsplit(":", 2)[2]) for line in out.split()}
    assert sorted(maxts) == ["0", "1"] and all(0 <= maxts[p] < per_partition[int(p)] for p in maxts), out
    # Earliest local (-4, ListOffsets v8): with no tiered storage, the log start; latest tiered
    # (-5, v9): nothing tiered.
    out = ok("kafka-get-offsets", "--bootstrap-server", bs, "--topic", topic, "--time", "-4")
    assert sorted(out.split()) == [f"{topic}:0:0", f"{topic}:1:0"], out
    ok("kafka-get-offsets", "--bootstrap-server", bs, "--topic", topic, "--time", "-5")

    # confluent-kafka reads the keys and values the Java producer wrote.
    c = Consumer({"bootstrap.servers": bs, "group.id": "kt-" + uuid.uuid4().hex[:8], "enable.auto.commit": False, **COMMON})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
        seen = []
        deadline = time.monotonic() + 20
        while len(seen) < len(records) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                seen.append((m.key().decode(), m.value().decode()))
        assert sorted(seen) == sorted(records)
    finally:
        c.close()

    # kafka-delete-records moves partition 0's log start; kafka-get-offsets -2 then says so.
    spec = os.path.join(str(tmp_path), "delete.json")
    with open(spec, "w") as f:
        f.write('{"partitions": [{"topic": "%s", "partition": 0, "offset": 1}], "version": 1}' % topic)
    out = ok("kafka-delete-records", "--bootstrap-server", bs, "--offset-json-file", spec)
    assert "low_watermark: 1" in out, out
    out = ok("kafka-get-offsets", "--bootstrap-server", bs, "--topic", topic, "--time", "-2")
    assert sorted(out.split()) == [f"{topic}:0:1", f"{topic}:1:0"], out


def test_kafka_consumer_groups(broker_factory):
    b = broker_factory(extra_args=["--group-initial-rebalance-delay-ms", "0"]).start()
    bs = b.bootstrap
    topic = unique_topic("kcg")
    group = "kcg-" + uuid.uuid4().hex[:8]
    ok("kafka-topics", "--bootstrap-server", bs, "--create", "--topic", topic, "--partitions", "2")
    p = producer(bs)
    for part in (0, 1):
        for i in range(10):
            p.produce(topic, value=b"v%d" % i, key=b"k", partition=part)
    flush_all(p)

    c = Consumer({
        "bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "session.timeout.ms": 10000, **COMMON,
    })
    try:
        c.subscribe([topic])
        seen = 0
        deadline = time.monotonic() + 30
        while seen < 20 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                seen += 1
        assert seen == 20, f"the group consumer read {seen} of 20 records"
        # Committed: partition 0 up to 4 (lag 6), partition 1 everything (lag 0).
        c.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 10)], asynchronous=False)
        member = c.memberid()

        assert group in ok("kafka-consumer-groups", "--bootstrap-server", bs, "--list").split()
        out = ok("kafka-consumer-groups", "--bootstrap-server", bs, "--describe", "--group", group)
        rows = {int(r[2]): r for r in table(out, "GROUP ")}
        assert set(rows) == {0, 1}, out
        # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
        assert rows[0][:7] == [group, topic, "0", "4", "10", "6", member], out
        assert rows[1][:7] == [group, topic, "1", "10", "10", "0", member], out
        assert rows[0][7] == "/127.0.0.1" and rows[0][8] == "rdkafka", out

        out = ok("kafka-consumer-groups", "--bootstrap-server", bs, "--describe", "--group", group, "--members")
        assert table(out, "GROUP ") == [[group, member, "/127.0.0.1", "rdkafka", "2"]], out
        out = ok("kafka-consumer-groups", "--bootstrap-server", bs, "--describe", "--group", group, "--state")
        # GROUP COORDINATOR (ID) ASSIGNMENT-STRATEGY STATE #MEMBERS
        assert table(out, "GROUP ") == [[group, bs, "(1)", "range", "Stable", "1"]], out

        # Offsets are moved only while the group is empty, as in Kafka.
        text = fails(
            "kafka-consumer-groups", "--bootstrap-server", bs, "--reset-offsets", "--to-earliest",
            "--execute", "--group", group, "--topic", topic,
        )
        assert "inactive" in text and "Stable" in text, text
    finally:
        c.close()

    out = ok("kafka-consumer-groups", "--bootstrap-server", bs, "--describe", "--group", group, "--state")
    assert table(out, "GROUP ")[0][-2:] == ["Empty", "0"], out

    out = ok(
        "kafka-consumer-groups", "--bootstrap-server", bs, "--reset-offsets", "--to-earliest",
        "--execute", "--group", group, "--topic", topic,
    )
    assert sorted(table(out, "GROUP ")) == [[group, topic, "0", "0"], [group, topic, "1", "0"]], out
    r = tool("kafka-consumer-groups", "--bootstrap-server", bs, "--describe", "--group", group)
    out = r.stdout
    assert r.returncode == 0 and f"Consumer group '{group}' has no active members." in r.stderr, r
    rows = sorted(table(out, "GROUP "))
    assert [r[:6] for r in rows] == [[group, topic, "0", "0", "10", "10"], [group, topic, "1", "0", "10", "10"]], out
    assert all(r[6:] == ["-", "-", "-"] for r in rows), out

    out = ok("kafka-consumer-groups", "--bootstrap-server", bs, "--delete", "--group", group)
    assert f"Deletion of requested consumer groups ('{group}') was successful." in out, out
    assert group not in ok("kafka-consumer-groups", "--bootstrap-server", bs, "--list").split()
    # A deleted (unknown) group: GROUP_ID_NOT_FOUND, as Kafka 4 answers DescribeGroups v6.
    text = fails("kafka-consumer-groups", "--bootstrap-server", bs, "--describe", "--group", group)
    assert "GroupIdNotFoundException" in text, text


def test_metadata_quorum_and_broker_api_versions(broker):
    bs = broker.bootstrap
    with open(os.path.join(broker.data_dir, "meta.properties")) as f:
        cluster_id = re.search(r"^cluster\.id=(\S+)$", f.read(), re.M).group(1)

    out = ok("kafka-metadata-quorum", "--bootstrap-server", bs, "describe", "--status")
    status = dict(re.findall(r"^(\w+):\s+(.*?)\s*$", out, re.M))
    assert status["ClusterId"] == cluster_id, out
    assert status["LeaderId"] == "1" and int(status["LeaderEpoch"]) >= 1, out
    assert int(status["HighWatermark"]) > 0, out
    assert status["MaxFollowerLag"] == "0", out
    # skein answers DescribeQuorum v0-1: voters without their controller endpoints (v2).
    assert status["CurrentVoters"] == '[{"id": 1}]' and status["CurrentObservers"] == "[]", out

    out = ok("kafka-metadata-quorum", "--bootstrap-server", bs, "describe", "--replication")
    rows = table(out, "NodeId")
    assert len(rows) == 1, out
    node, _dir, leo, lag, last_fetch, last_caught_up, role = rows[0]
    assert (node, lag, role) == ("1", "0", "Leader"), out
    assert int(leo) >= int(status["HighWatermark"]), out
    # The leader's own fetch and caught-up times are "now", as Kafka's leader reports them.
    now_ms = time.time() * 1000
    assert abs(int(last_fetch) - now_ms) < 60000 and abs(int(last_caught_up) - now_ms) < 60000, out

    out = ok("kafka-broker-api-versions", "--bootstrap-server", bs)
    assert out.startswith(f"{bs} (id: 1 rack: null isFenced: false) -> ("), out
    listed = dict(re.findall(r"^\t(\w+)\(\d+\): (.*?),?$", out, re.M))
    with open(os.path.join(REPO_ROOT, "proto", "src", "versions.rs")) as f:
        src = f.read()
    supported = re.findall(r"\(ApiKey::(\w+), (\d+), (\d+)\)", src.split("pub const SUPPORTED", 1)[1].split("];", 1)[0])
    assert len(supported) > 20
    for name, lo, hi in supported:
        lo = "0" if name == "Produce" else lo  # listed from v0 (see README: Kafka APIs)
        want = f"{lo} [usable: {hi}]" if lo == hi else f"{lo} to {hi} [usable: {hi}]"
        assert listed.get(name) == want, f"{name}: {listed.get(name)!r}, expected {want!r}\n{out}"
    for name in ("DescribeTopicPartitions", "EndTxn", "DescribeLogDirs"):
        assert listed.get(name) == "UNSUPPORTED", out


def test_metadata_quorum_through_any_broker_of_a_cluster(cluster_factory):
    """Kafka's brokers forward DescribeQuorum to the active controller, and the admin client
    sends it to any broker: skein's non-leaders relay it to the quorum leader (before, the tool
    could time out after 60 s through a follower)."""
    brokers = cluster_factory(3)
    answers = []
    for b in brokers:
        out = ok("kafka-metadata-quorum", "--bootstrap-server", b.bootstrap, "describe", "--status")
        status = dict(re.findall(r"^(\w+):\s+(.*?)\s*$", out, re.M))
        assert status["CurrentVoters"] == '[{"id": 1}, {"id": 2}, {"id": 3}]', out
        answers.append(status["LeaderId"])
    assert len(set(answers)) == 1 and answers[0] in ("1", "2", "3"), answers
    leader = answers[0]
    follower = next(b for b in brokers if str(b.node_id) != leader)
    out = ok("kafka-metadata-quorum", "--bootstrap-server", follower.bootstrap, "describe", "--replication")
    rows = {r[0]: r for r in table(out, "NodeId")}
    assert set(rows) == {"1", "2", "3"}, out
    assert [rows[n][-1] for n in sorted(rows)] == ["Leader" if n == leader else "Follower" for n in sorted(rows)], out


def test_apache_kafka_broker_starts_and_serves(tmp_path):
    """ci/kafka.sh start-broker: one Apache Kafka broker (KRaft, combined mode) takes a topic
    create, a produce and a consume, and stop-broker stops it. It is the reference the benchmark
    and differential checks start; here it runs once (about 15 s)."""
    d = str(tmp_path / "kafka")
    port = free_port()
    cport = free_port()
    r = subprocess.run(
        [KAFKA_SH, "start-broker", d, str(port), str(cport)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    try:
        assert r.returncode == 0, f"start-broker failed:\n{r.stderr}"
        bs = f"127.0.0.1:{port}"
        topic = unique_topic("apache")
        assert f"Created topic {topic}." in ok(
            "kafka-topics", "--bootstrap-server", bs, "--create", "--topic", topic, "--partitions", "2",
        )
        p = producer(bs)
        for i in range(10):
            p.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
        flush_all(p)
        c = Consumer({"bootstrap.servers": bs, "group.id": "apache-" + uuid.uuid4().hex[:8], **COMMON})
        try:
            c.assign([TopicPartition(topic, q, 0) for q in (0, 1)])
            seen = set()
            deadline = time.monotonic() + 30
            while len(seen) < 10 and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and m.error() is None:
                    seen.add((m.key(), m.value()))
            assert seen == {(b"k%d" % i, b"v%d" % i) for i in range(10)}
        finally:
            c.close()
    finally:
        s = subprocess.run([KAFKA_SH, "stop-broker", d], capture_output=True, text=True, timeout=60)
        assert s.returncode == 0, s.stderr
    assert not os.path.exists(os.path.join(d, "kafka.pid")), "stop-broker left its pid file"
