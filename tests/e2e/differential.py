"""The differential check's driver: one fixed sequence of admin requests, sent through
kafka-python's KafkaAdminClient (whose answers are the responses' own fields), and the
comparison of two brokers' answers field by field.

`run_sequence(bootstrap)` returns {step: answer} with what legitimately differs between two
brokers taken out (topic ids, cluster id, hosts and ports, member ids, error message texts);
`differences(kafka, skein)` lists every remaining path whose value differs, as
(path, kafka's value, skein's value). A config only one broker lists is a difference of its own
(path ".../configs/<name>"). Run it as a script to print both answers and the differences:

    .venv/bin/python tests/e2e/differential.py KAFKA_BOOTSTRAP SKEIN_BOOTSTRAP
"""

import json
import socket
import struct
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition as CTopicPartition
from kafka import TopicPartition
from kafka.admin import ConfigResource, KafkaAdminClient
from kafka.protocol.consumer.offsets import OffsetSpec

TOPIC = "diff-topic"
GROUP = "diff-group"
# Records produced with these timestamps (ms), in this order, to partition 0.
TIMESTAMPS = [1_700_000_000_000 + i * 1000 for i in (0, 1, 2, 5, 3, 4)]


def api_versions(bootstrap):
    """ApiVersions v0 over a raw socket: {api_key: (min, max)}."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    client = b"skein-diff"
    body = struct.pack(">hhih", 18, 0, 1, len(client)) + client
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read(s, 4))[0]
        data = _read(s, size)
    _corr, err, n = struct.unpack(">ihi", data[:10])
    out = {}
    for i in range(n):
        key, lo, hi = struct.unpack(">hhh", data[10 + 6 * i:16 + 6 * i])
        out[key] = (lo, hi)
    return {"error_code": err, "apis": out}


def _read(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


def _plain(v):
    """JSON-able: enums by name, tuples as lists, keys as strings."""
    if isinstance(v, dict):
        return {str(getattr(k, "name", k)): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "_asdict"):
        return _plain(v._asdict())
    if hasattr(v, "to_dict"):  # a protocol message (kafka-python's DataContainer)
        return _plain(v.to_dict())
    if hasattr(v, "name") and hasattr(v, "value") and not isinstance(v, (str, bytes)):
        return v.name
    return v


# Fields whose values differ between any two brokers or runs.
IGNORED = {"topic_id", "cluster_id", "host", "port", "member_id", "client_host",
           "throttle_time_ms", "error_message", "client_id", "version"}


def _scrub(v):
    if isinstance(v, dict):
        return {k: _scrub(x) for k, x in v.items() if k not in IGNORED}
    if isinstance(v, list):
        return [_scrub(x) for x in v]
    return v


def _configs(admin, name, only=None):
    r = admin.describe_configs([ConfigResource("TOPIC", name, only)], config_filter="all")
    return _plain(r)


def _wait_for_leaders(admin, topic, partitions):
    deadline = time.monotonic() + 30
    last = None
    while time.monotonic() < deadline:
        try:
            t = admin.describe_topics([topic])[0]
            last = t
            if t["error_code"] == 0 and len(t["partitions"]) == partitions and all(
                    p["leader_id"] >= 0 for p in t["partitions"]):
                return
        except Exception as e:  # noqa: BLE001 (not known yet: ask again)
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"topic {topic} has no leaders after 30 s: {last!r}")


def _produce(bootstrap):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": False})
    for i, ts in enumerate(TIMESTAMPS):
        p.produce(TOPIC, value=b"v%d" % i, key=b"k%d" % i, partition=0, timestamp=ts)
        p.flush(10)  # one batch per record: each has its own max timestamp
    assert p.flush(10) == 0


def _group(bootstrap):
    """A classic group with one member that commits offset 3 of partition 0 and stays."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "client.id": "diff-member",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "partition.assignment.strategy": "range", "session.timeout.ms": 30000})
    c.subscribe([TOPIC])
    deadline = time.monotonic() + 30
    while not c.assignment() and time.monotonic() < deadline:
        c.poll(0.2)
    c.commit(offsets=[CTopicPartition(TOPIC, 0, 3)], asynchronous=False)
    return c


def run_sequence(bootstrap):
    """Every step's answer, scrubbed of what legitimately differs."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="skein-diff")
    out = {}
    try:
        out["api_versions"] = api_versions(bootstrap)
        out["create"] = _plain(admin.create_topics(
            {TOPIC: {"num_partitions": 2, "replication_factor": 1,
                     "configs": {"retention.ms": "3600000", "cleanup.policy": "delete",
                                 "max.message.bytes": "200000"}}}, raise_errors=False))
        _wait_for_leaders(admin, TOPIC, 2)
        out["create_exists"] = _plain(admin.create_topics(
            {TOPIC: {"num_partitions": 1, "replication_factor": 1}}, raise_errors=False))
        out["create_bad_rf"] = _plain(admin.create_topics(
            {"diff-bad-rf": {"num_partitions": 1, "replication_factor": 3}}, raise_errors=False))
        out["create_bad_config"] = _plain(admin.create_topics(
            {"diff-bad-config": {"num_partitions": 1, "replication_factor": 1,
                                 "configs": {"retention.ms": "soon"}}}, raise_errors=False))
        out["create_compacted"] = _plain(admin.create_topics(
            {"diff-compacted": {"num_partitions": 1, "replication_factor": 1,
                                "configs": {"cleanup.policy": "compact"}}},
            validate_only=True, raise_errors=False))
        out["create_validate_only"] = _plain(admin.create_topics(
            {"diff-validate": {"num_partitions": 3, "replication_factor": 1}},
            validate_only=True, raise_errors=False))
        out["describe_configs"] = _configs(admin, TOPIC)
        admin.alter_configs([ConfigResource("TOPIC", TOPIC, {"retention.ms": "7200000"})],
                            incremental=False)
        out["after_alter"] = _configs(admin, TOPIC, {"retention.ms": None,
                                                     "cleanup.policy": None})
        admin.alter_configs([ConfigResource("TOPIC", TOPIC, {"segment.ms": ("SET", "600000"),
                                                             "max.message.bytes": ("DELETE", None)})],
                            incremental=True)
        out["after_incremental"] = _configs(admin, TOPIC, {"segment.ms": None,
                                                           "max.message.bytes": None,
                                                           "retention.ms": None})
        out["create_partitions"] = _plain(admin.create_partitions({TOPIC: 4}, raise_errors=False))
        out["create_partitions_fewer"] = _plain(admin.create_partitions({TOPIC: 3},
                                                                        raise_errors=False))
        _produce(bootstrap)
        tp = TopicPartition(TOPIC, 0)
        specs = {"earliest": OffsetSpec.EARLIEST, "latest": OffsetSpec.LATEST,
                 "max_timestamp": OffsetSpec.MAX_TIMESTAMP,
                 "by_time_exact": TIMESTAMPS[3], "by_time_between": TIMESTAMPS[2] + 500,
                 "by_time_after_all": TIMESTAMPS[3] + 1}
        out["list_offsets"] = {k: _plain(admin.list_partition_offsets({tp: v})[tp])
                               for k, v in specs.items()}
        member = _group(bootstrap)
        try:
            out["describe_groups"] = _plain(admin.describe_groups([GROUP]))
            out["group_offsets"] = _plain(admin.list_group_offsets({GROUP: None}))
        finally:
            member.close()
        cluster = _plain(admin.describe_cluster())
        out["describe_cluster"] = cluster
        out["delete"] = _plain(admin.delete_topics([TOPIC], raise_errors=False))
        out["delete_unknown"] = _plain(admin.delete_topics(["diff-no-such-topic"],
                                                           raise_errors=False))
    finally:
        admin.close()
    return _scrub(out)


def differences(a, b, path=""):
    """Every path where `a` and `b` differ: [(path, a's value, b's value)]."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}/{k}"
            if k not in a:
                out.append((p, "<absent>", b[k]))
            elif k not in b:
                out.append((p, a[k], "<absent>"))
            else:
                out += differences(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += differences(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [(path, a, b)]


if __name__ == "__main__":
    ka, sk = run_sequence(sys.argv[1]), run_sequence(sys.argv[2])
    print(json.dumps({"kafka": ka, "skein": sk}, indent=1, default=str))
    for p, x, y in differences(ka, sk):
        print(f"DIFF {p}: kafka={json.dumps(x, default=str)[:200]} "
              f"skein={json.dumps(y, default=str)[:200]}")
