"""`skein groups` (list, describe, delete, reset-offsets) against consumer groups with real
confluent-kafka members.

Behaviour asserted (the way kafka-consumer-groups.sh behaves):
- `list` shows a group with its state (Stable while a consumer is in it, Empty after it
  left), and on three brokers it merges the groups every broker coordinates;
- `describe` shows the members (member id, client id, host, assigned partitions) and per
  partition the committed offset, log end offset and lag: the lag is what the consumer has
  read but not committed, and 0 once it has committed everything;
- `reset-offsets` and `delete` are refused while the group has members, with a clear message
  and a non-zero exit; once the consumer closed, `--to-earliest` makes a new consumer of the
  group re-read everything, `--to-offset` (clamped to the log end, `--partition` only) and
  `--to-datetime` (first record at or after the time; the log end past the newest record)
  move the committed offsets to the right places, and `--dry-run` commits nothing;
- `delete` of an empty group works and the group is then gone; unknown groups, unknown
  topics, bad arguments and an unreachable broker are CLI errors, never panics.
"""

import re
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone

from confluent_kafka import Consumer, TopicPartition, ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import free_port, skein_bin
from helpers import COMMON, flush_all, producer, recent_base_ts, unique_topic

PARTITIONS = 3
PER_PARTITION = 100


def cli(bootstrap, *args, timeout=60):
    r = subprocess.run(
        [skein_bin(), "--bootstrap", bootstrap, "groups", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "panicked" not in r.stderr, r.stderr
    return r


def ok(bootstrap, *args):
    r = cli(bootstrap, *args)
    assert r.returncode == 0, f"skein groups {' '.join(args)} failed:\n{r.stderr}"
    return r.stdout


def table(text, header_start):
    """Rows (lists of cells) of the table whose header line starts with `header_start`."""
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


def field(text, name):
    m = re.search(rf"^{name}:\s+(.*)$", text, re.M)
    assert m, f"no {name!r} in:\n{text}"
    return m.group(1).strip()


def lag_rows(text):
    """{(topic, partition): (current, log_end, lag, consumer_id)} from describe."""
    return {
        (r[0], int(r[1])): (r[2], r[3], r[4], r[5])
        for r in table(text, "TOPIC  ")
    }


def committed(bootstrap, group, topic):
    a = AdminClient({"bootstrap.servers": bootstrap, **COMMON})
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
    res = a.list_consumer_group_offsets([req])[group].result(30)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


def make_topic(bootstrap, partitions=PARTITIONS, rf=1):
    topic = unique_topic("gcli")
    a = AdminClient({"bootstrap.servers": bootstrap, **COMMON})
    a.create_topics([NewTopic(topic, partitions, rf)])[topic].result(30)
    return topic


def produce_timed(bootstrap, topic, base_ts):
    """PER_PARTITION records in each partition; offset i has timestamp base_ts + 1000 * i."""
    p = producer(bootstrap, **{"linger.ms": 5, "acks": "all"})
    for part in range(PARTITIONS):
        for i in range(PER_PARTITION):
            p.produce(topic, value=f"{part}-{i}".encode(), partition=part,
                      timestamp=base_ts + 1000 * i)
    flush_all(p, 60)


def group_consumer(bootstrap, group, reset="earliest"):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": reset,
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 100,
        **COMMON,
    })


def read(c, n, timeout=60):
    """Poll until `n` records arrived (fail after `timeout` s); returns their values."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        got.append(m.value().decode())
    assert len(got) == n, f"read {len(got)} of {n} records within {timeout}s"
    return got


def wait_for(what, check, timeout=30):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def iso(ms, hours=0):
    """`ms` as ISO 8601 in the zone UTC+hours (isoformat gives microseconds and +HH:MM)."""
    tz = timezone(timedelta(hours=hours))
    return datetime.fromtimestamp(ms / 1000, tz).isoformat()


def test_groups_cli_describe_reset_delete(broker):
    boot = broker.bootstrap
    topic = make_topic(boot)
    base_ts = recent_base_ts()
    produce_timed(boot, topic, base_ts)
    total = PARTITIONS * PER_PARTITION
    group = f"gcli-{uuid.uuid4().hex[:6]}"

    c = group_consumer(boot, group)
    c.subscribe([topic])
    read(c, 150)
    c.commit(asynchronous=False)

    # list: the group is there and Stable while the consumer is in it.
    def listed_state():
        rows = {r[0]: r for r in table(ok(boot, "list"), "GROUP")}
        return rows.get(group, [None, None])[1]
    assert wait_for("the group to be Stable", lambda: listed_state() == "Stable")
    row = {r[0]: r for r in table(ok(boot, "list"), "GROUP")}[group]
    assert row[2] == "consumer", row

    # describe: one member holding all partitions; committed 150, so lag 150 in all.
    out = ok(boot, "describe", group)
    assert field(out, "State") == "Stable" and field(out, "Members") == "1", out
    assert field(out, "Protocol type") == "consumer", out
    assert field(out, "Assignor") in ("range", "roundrobin", "cooperative-sticky"), out
    members = table(out, "MEMBER-ID")
    assert len(members) == 1, out
    member_id, _instance, client_id, host, assignment = members[0]
    assert client_id == "rdkafka" and host.endswith("127.0.0.1"), out
    assert assignment == f"{topic}({','.join(str(p) for p in range(PARTITIONS))})", out
    rows = lag_rows(out)
    assert set(rows) == {(topic, p) for p in range(PARTITIONS)}, out
    assert all(r[1] == str(PER_PARTITION) and r[3] == member_id for r in rows.values()), out
    # A partition the consumer has not committed yet shows "-" for offset and lag, as in Kafka.
    assert sum(int(r[0]) for r in rows.values() if r[0] != "-") == 150, out
    for current, end, lag, _ in rows.values():
        assert lag == ("-" if current == "-" else str(int(end) - int(current))), out

    # Refused while the consumer is in the group.
    r = cli(boot, "reset-offsets", group, "--topic", topic, "--to-earliest")
    assert r.returncode != 0 and "active members" in r.stderr, r.stderr
    r = cli(boot, "reset-offsets", group, "--topic", topic, "--to-earliest", "--dry-run")
    assert r.returncode != 0 and "active members" in r.stderr, r.stderr
    r = cli(boot, "delete", group)
    assert r.returncode != 0 and f"group {group} has active members; stop them first" in r.stderr, r.stderr

    # After it has read and committed everything the lag is 0 everywhere.
    read(c, total - 150)
    c.commit(asynchronous=False)
    rows = lag_rows(ok(boot, "describe", group))
    assert all(r[:3] == (str(PER_PARTITION), str(PER_PARTITION), "0") for r in rows.values()), rows
    c.close()

    out = wait_for("the group to be Empty",
                   lambda: (lambda o: o if field(o, "State") == "Empty" else None)(
                       ok(boot, "describe", group)))
    assert "(no active members)" in out and field(out, "Members") == "0", out
    assert all(r[3] == "-" and r[2] == "0" for r in lag_rows(out).values()), out
    assert listed_state() == "Empty"

    # --dry-run prints the plan and commits nothing.
    out = ok(boot, "reset-offsets", group, "--topic", topic, "--to-earliest", "--dry-run")
    assert table(out, "TOPIC") == [[topic, str(p), "0"] for p in range(PARTITIONS)], out
    assert committed(boot, group, topic) == {p: PER_PARTITION for p in range(PARTITIONS)}

    # --to-earliest: a new consumer of the group reads everything again. It would start at
    # the end (auto.offset.reset=latest) if the reset had not committed offsets.
    out = ok(boot, "reset-offsets", group, "--topic", topic, "--to-earliest")
    assert table(out, "TOPIC") == [[topic, str(p), "0"] for p in range(PARTITIONS)], out
    assert committed(boot, group, topic) == {p: 0 for p in range(PARTITIONS)}
    c = group_consumer(boot, group, reset="latest")
    c.subscribe([topic])
    again = read(c, total)
    assert sorted(again) == sorted(f"{p}-{i}" for p in range(PARTITIONS) for i in range(PER_PARTITION))
    c.close()  # without committing: the offsets stay at 0
    wait_for("the group to be Empty again",
             lambda: field(ok(boot, "describe", group), "State") == "Empty")

    # --to-offset: clamped to the log end; --partition limits it to those partitions.
    out = ok(boot, "reset-offsets", group, "--topic", topic, "--to-offset", "250")
    assert table(out, "TOPIC") == [[topic, str(p), str(PER_PARTITION)] for p in range(PARTITIONS)]
    out = ok(boot, "reset-offsets", group, "--topic", topic, "--to-offset", "30", "--partition", "1")
    assert table(out, "TOPIC") == [[topic, "1", "30"]], out
    assert committed(boot, group, topic) == {0: PER_PARTITION, 1: 30, 2: PER_PARTITION}

    # --to-datetime: the first record at or after the time, in any zone; the end if none.
    out = ok(boot, "reset-offsets", group, "--topic", topic, "--to-datetime", iso(base_ts + 40_500))
    assert table(out, "TOPIC") == [[topic, str(p), "41"] for p in range(PARTITIONS)], out
    out = ok(boot, "reset-offsets", group, "--topic", topic, "--partition", "2",
             "--to-datetime", iso(base_ts + 7_000, hours=5))
    assert table(out, "TOPIC") == [[topic, "2", "7"]], out
    assert committed(boot, group, topic) == {0: 41, 1: 41, 2: 7}
    out = ok(boot, "reset-offsets", group, "--topic", topic,
             "--to-datetime", iso(base_ts + 3_600_000 * 5))
    assert table(out, "TOPIC") == [[topic, str(p), str(PER_PARTITION)] for p in range(PARTITIONS)]
    rows = lag_rows(ok(boot, "describe", group))
    assert all(r[:3] == (str(PER_PARTITION), str(PER_PARTITION), "0") for r in rows.values()), rows

    # Bad input: clear errors, non-zero exits.
    r = cli(boot, "reset-offsets", group, "--topic", "no-such-topic", "--to-earliest")
    assert r.returncode != 0 and "UNKNOWN_TOPIC_OR_PARTITION" in r.stderr, r.stderr
    r = cli(boot, "reset-offsets", group, "--topic", topic, "--to-earliest", "--partition", "9")
    assert r.returncode != 0 and "partition 9 does not exist" in r.stderr, r.stderr
    r = cli(boot, "reset-offsets", group, "--topic", topic, "--to-datetime", "yesterday")
    assert r.returncode != 0 and "ISO 8601" in r.stderr, r.stderr
    r = cli(boot, "reset-offsets", group, "--topic", topic)
    assert r.returncode != 0 and "--to-" in r.stderr, r.stderr
    r = cli(boot, "describe", f"no-such-{group}")
    assert r.returncode != 0 and "does not exist" in r.stderr, r.stderr

    # delete: works on the empty group; then it is gone.
    assert f"Deleted group {group}." in ok(boot, "delete", group)
    r = cli(boot, "describe", group)
    assert r.returncode != 0 and f"group '{group}' does not exist" in r.stderr, r.stderr
    r = cli(boot, "delete", group)
    assert r.returncode != 0 and "does not exist" in r.stderr, r.stderr
    assert group not in [r[0] for r in table(ok(boot, "list"), "GROUP")]
    assert committed(boot, group, topic) == {p: -1001 for p in range(PARTITIONS)}

    # An unreachable broker is an error message, not a hang or a panic.
    r = cli(f"127.0.0.1:{free_port()}", "list", timeout=60)
    assert r.returncode != 0 and "cannot connect" in r.stderr, r.stderr


def test_groups_cli_lists_the_groups_of_every_broker(cluster_factory):
    brokers = cluster_factory(3)
    boot = brokers[0].bootstrap
    topic = make_topic(",".join(b.bootstrap for b in brokers), rf=3)
    groups = [f"many-{i}-{uuid.uuid4().hex[:6]}" for i in range(8)]
    for g in groups:
        # A reset creates the group with committed offsets (no members needed).
        ok(boot, "reset-offsets", g, "--topic", topic, "--to-latest")
    coordinators = {field(ok(boot, "describe", g), "Coordinator").split()[0] for g in groups}
    # With 8 groups on 3 brokers one coordinator for all is (1/3)^7: practically impossible.
    assert len(coordinators) > 1, coordinators
    for b in brokers:
        rows = {r[0]: r for r in table(ok(b.bootstrap, "list"), "GROUP")}
        assert set(groups) <= set(rows), (b.bootstrap, rows)
        assert all(rows[g][1] == "Empty" for g in groups), rows
