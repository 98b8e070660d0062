"""skein's own CLI end to end, and protocol behaviour the client tests do not reach.

Kafka behaviour asserted:
- `skein topics create|list|describe|delete`, `skein produce`, `skein consume` work against a
  broker over the Kafka protocol, and Kafka errors come back named (exit code 1 with the
  error-code name on stderr).
- Fetch long poll: a fetch waiting for data (max_wait) is answered as soon as a produce lands,
  not when max_wait runs out.
- OffsetForLeaderEpoch: the end offset of the current leader epoch is the log end offset; a
  current_leader_epoch newer than the broker's is UNKNOWN_LEADER_EPOCH (raw v2 request, since
  the client libraries do not expose this API).
"""

import socket
import struct
import subprocess
import threading
import time

from confluent_kafka import TopicPartition

from conftest import skein_bin
from helpers import consumer, flush_all, producer, unique_topic


def cli(broker, *args, stdin=None, timeout=30):
    return subprocess.run(
        [skein_bin(), "--bootstrap", broker.bootstrap, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
    )


def test_cli_topics_produce_consume(broker):
    topic = unique_topic("cli")
    r = cli(broker, "topics", "create", topic, "--partitions", "3", "--config", "retention.ms=3600000")
    assert r.returncode == 0, r.stderr
    r = cli(broker, "topics", "list")
    assert topic in r.stdout.decode().split(), r.stdout
    r = cli(broker, "topics", "describe", topic)
    out = r.stdout.decode()
    assert r.returncode == 0 and "PartitionCount: 3" in out and "retention.ms=3600000" in out, out

    lines = b"".join(b"key-%d\tvalue-%d\n" % (i % 7, i) for i in range(300))
    r = cli(broker, "produce", topic, "--key-separator", "\t", stdin=lines)
    assert r.returncode == 0, r.stderr
    got = []
    for p in range(3):
        r = cli(broker, "consume", topic, "--partition", str(p), "--offset", "0",
                "--print-key", "--idle-timeout-ms", "1000")
        assert r.returncode == 0, r.stderr
        got += [tuple(l.split("\t", 1)) for l in r.stdout.decode().splitlines()]
    assert sorted(got) == sorted((f"key-{i % 7}", f"value-{i}") for i in range(300))
    # The same key always lands in the same partition (murmur2, as the Java client).
    by_key = {}
    for p in range(3):
        r = cli(broker, "consume", topic, "--partition", str(p), "--offset", "0",
                "--print-key", "--idle-timeout-ms", "1000")
        for l in r.stdout.decode().splitlines():
            by_key.setdefault(l.split("\t", 1)[0], set()).add(p)
    assert all(len(ps) == 1 for ps in by_key.values()), by_key

    r = cli(broker, "topics", "create", topic)
    assert r.returncode != 0 and b"TOPIC_ALREADY_EXISTS" in r.stderr, r.stderr
    r = cli(broker, "topics", "delete", topic)
    assert r.returncode == 0, r.stderr
    r = cli(broker, "topics", "describe", topic)
    assert r.returncode != 0 and b"UNKNOWN_TOPIC_OR_PARTITION" in r.stderr, r.stderr


def test_fetch_long_poll_wakes_on_produce(broker):
    topic = unique_topic("longpoll")
    p = producer(broker.bootstrap)
    p.produce(topic, b"first")
    flush_all(p)
    # The consumer waits up to 20 s per fetch for new data; a produce must wake it at once.
    c = consumer(broker.bootstrap, **{"fetch.wait.max.ms": 20000, "fetch.min.bytes": 1})
    c.assign([TopicPartition(topic, 0, 1)])
    c.poll(1.0)  # the fetch at offset 1 is now parked on the broker

    def later():
        time.sleep(1.0)
        p.produce(topic, b"second")
        p.flush(10)

    threading.Thread(target=later).start()
    t0 = time.time()
    msg = None
    while time.time() - t0 < 15 and msg is None:
        m = c.poll(0.5)
        if m is not None and not m.error():
            msg = m
    waited = time.time() - t0
    c.close()
    assert msg is not None and msg.value() == b"second", "the parked fetch never returned the record"
    # Far below the 20 s max wait: the produce woke the fetch.
    assert waited < 12, f"fetch answered after {waited:.1f}s: not woken by the produce"


def _kstr(x):
    b = x.encode()
    return struct.pack(">h", len(b)) + b


def test_offset_for_leader_epoch(broker):
    topic = unique_topic("ofle")
    p = producer(broker.bootstrap)
    for i in range(5):
        p.produce(topic, b"x%d" % i)
    flush_all(p)
    # OffsetForLeaderEpoch v2, encoded by hand: topic -> [(partition, current epoch, epoch)].
    parts = [(0, -1, 0), (0, -1, 7), (1, -1, 0), (0, 3, 0)]
    body = struct.pack(">i", 1) + _kstr(topic) + struct.pack(">i", len(parts))
    for part, cur, ep in parts:
        body += struct.pack(">iii", part, cur, ep)
    resp = _roundtrip(broker, struct.pack(">hhi", 23, 2, 77) + _kstr("e2e") + body)
    corr, _throttle, ntopics = struct.unpack(">iii", resp[:12])
    assert (corr, ntopics) == (77, 1)
    tlen = struct.unpack(">h", resp[12:14])[0]
    pos = 14 + tlen
    n = struct.unpack(">i", resp[pos:pos + 4])[0]
    pos += 4
    got = []
    for _ in range(n):
        got.append(struct.unpack(">hiiq", resp[pos:pos + 18]))
        pos += 18
    # (error, partition, leader epoch, end offset)
    assert got[0] == (0, 0, 0, 5), "current epoch ends at the log end offset"
    assert got[1] == (0, 0, 0, 5), "an epoch above the latest answers the latest epoch's end"
    assert got[2][0] == 3, "UNKNOWN_TOPIC_OR_PARTITION"
    assert got[3][0] == 75, "a current_leader_epoch above ours is UNKNOWN_LEADER_EPOCH"


def _roundtrip(broker, req):
    """Sends one size-prefixed request frame and returns the response frame's body."""
    host, port = broker.bootstrap.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(req)) + req)
        size = struct.unpack(">i", _recv(s, 4))[0]
        return _recv(s, size)


def _recv(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, "connection closed early"
        buf += chunk
    return buf


def test_api_versions_kip511_fallback(broker):
    # KIP-511: an ApiVersions request of a version newer than the broker's is answered in v0
    # format with UNSUPPORTED_VERSION (35) and the broker's own ranges, so the client can retry.
    resp = _roundtrip(broker, struct.pack(">hhi", 18, 99, 5) + _kstr("e2e") + b"\x00" * 8)
    corr, err, n = struct.unpack(">ihi", resp[:10])
    assert (corr, err) == (5, 35)
    ranges = {}
    for i in range(n):
        key, lo, hi = struct.unpack(">hhh", resp[10 + 6 * i:16 + 6 * i])
        ranges[key] = (lo, hi)
    assert ranges[18] == (0, 3) and ranges[0] == (0, 9) and ranges[1][0] == 4, ranges


def test_legacy_alter_configs_replaces_overrides(broker):
    # AlterConfigs (the legacy API) replaces a topic's whole override set; keys not named go
    # back to their defaults. IncrementalAlterConfigs merges instead (test_confluent_admin.py).
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    topic = unique_topic("legacy-alter")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "3600000", "segment.ms": "600000"})])[topic].result(20)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.bytes": "1048576"})
    admin.alter_configs([res])[res].result(20)
    desc = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    entries = list(desc.values())[0].result(20)
    assert entries["retention.bytes"].value == "1048576" and not entries["retention.bytes"].is_default
    assert entries["retention.ms"].is_default and entries["retention.ms"].value == "604800000"
    assert entries["segment.ms"].is_default
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"cleanup.policy": "sometimes"})
    try:
        admin.alter_configs([bad])[bad].result(20)
        raise AssertionError("cleanup.policy=sometimes must be refused")
    except Exception as e:  # KafkaException carrying INVALID_CONFIG
        assert "INVALID_CONFIG" in str(e) or "cleanup.policy" in str(e), e
