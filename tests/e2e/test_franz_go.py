"""franz-go (Go: kgo and kadm, pinned in tests/go/go.mod) against skein.

The Go program tests/go/main.go (built by ci/setup.sh into target/go/franzgo) runs each scenario
and prints what it saw as JSON; these tests assert on it:
- kgo's default producer (idempotent, acks=all) with every codec, keys and headers: the offsets it
  was given, the batches skein stored (codec, producer id), and the records read back exactly by a
  kgo consumer and by confluent-kafka;
- a kgo consumer group of two members (cooperative-sticky, kgo's default), classic and KIP-848
  (kgo.ServerSideBalancer): the assignment split, each member reading only its partitions, commits,
  a member leaving and its partitions moving with their committed offsets, a new member resuming;
- kadm: topics (create with configs, list, describe, create partitions, delete), configs
  (describe, incremental and whole alter), offsets (start, end, by time), groups (list, describe,
  committed offsets, lag, offset delete, delete), brokers, and the Kafka error codes of bad requests.
"""

import json
import os
import subprocess

import pytest

from conftest import REPO_ROOT, skein_bin
from helpers import consume_exact, unique_topic
from storage import stored_batches

FRANZGO = os.path.join(REPO_ROOT, "target", "go", "franzgo")
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

# Kafka error codes the admin scenario expects.
UNKNOWN_TOPIC_OR_PARTITION = 3
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_CONFIG = 40
NON_EMPTY_GROUP = 68
GROUP_SUBSCRIBED_TO_TOPIC = 86


def franzgo(*args, timeout=90):
    if not os.access(FRANZGO, os.X_OK):
        pytest.fail(f"{FRANZGO} is missing: run ./ci/setup.sh (go build in tests/go)", pytrace=False)
    r = subprocess.run([FRANZGO, *map(str, args)], capture_output=True, timeout=timeout)
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0, f"franzgo {' '.join(map(str, args))} failed ({r.returncode}):\n{out}\n{err}"
    return json.loads(out.strip().splitlines()[-1])


def create_topic(broker, topic, partitions):
    r = subprocess.run(
        [skein_bin(), "--bootstrap", broker.bootstrap, "topics", "create", topic, "--partitions", str(partitions)],
        capture_output=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr.decode()


@pytest.fixture
def group_broker(broker_factory):
    """A broker whose groups rebalance without waiting: no initial delay for classic groups, and
    KIP-848 members told to heartbeat every 500 ms (default 5 s), so a scenario takes seconds."""
    return broker_factory(
        extra_args=["--group-initial-rebalance-delay-ms", "0", "--group-consumer-heartbeat-interval-ms", "500"]
    ).start()


def test_franz_go_idempotent_producer_every_codec(broker):
    topic = unique_topic("franzgo-codecs")
    create_topic(broker, topic, 3)
    n, parts = 30, 3
    for i, codec in enumerate(CODECS):
        res = franzgo("produce", broker.bootstrap, topic, codec, n, parts)
        # Each producer run is one idempotent producer (its own producer id) and its records land
        # in order after the previous run's: record j went to partition j % 3.
        assert len(res["producer_ids"]) == 1 and res["producer_ids"][0] >= 0, res
        assert res["records"] == [{"p": j % parts, "o": i * (n // parts) + j // parts} for j in range(n)]
    for p in range(parts):
        batches = stored_batches(broker.data_dir, topic, p)
        assert sorted({b["codec"] for b in batches}) == sorted(CODECS), batches
        assert all(b["producer_id"] >= 0 for b in batches), batches

    def want(p):
        return [
            (f"k{j}", f"{codec}-v{j}-payload payload payload payload", [["h", f"x{j}"], ["codec", codec]])
            for codec in CODECS
            for j in range(n)
            if j % parts == p
        ]

    got = franzgo("consume", broker.bootstrap, topic, n * len(CODECS))["records"]
    assert len(got) == n * len(CODECS)
    for p in range(parts):
        mine = [r for r in got if r["p"] == p]
        assert [r["o"] for r in mine] == list(range(len(mine)))
        assert [(r["k"], r["v"], r["h"]) for r in mine] == want(p)
        # confluent-kafka (librdkafka) reads the same records.
        msgs = consume_exact(broker.bootstrap, topic, p, len(mine))
        assert [(m.key().decode(), m.value().decode(), [[k, v.decode()] for k, v in m.headers()]) for m in msgs] == want(p)


@pytest.mark.parametrize("protocol", ["classic", "848"])
def test_franz_go_consumer_group(group_broker, protocol):
    topic = unique_topic("franzgo-group")
    group = unique_topic("franzgo-g")
    create_topic(group_broker, topic, 4)
    franzgo("produce", group_broker.bootstrap, topic, "none", 20, 4)  # 5 records per partition
    r = franzgo("group", group_broker.bootstrap, topic, group, protocol, timeout=120)
    if protocol == "classic":
        assert r["list_groups"] == {"type": "classic", "protocol_type": "consumer", "state": "Stable"}
    else:
        assert r["list_groups"] == {"type": "consumer", "protocol_type": "consumer", "state": "Stable"}
    # a and b split the partitions 2/2; a kept the two it had (sticky, cooperative).
    assert sorted(r["a_owned"] + r["b_owned"]) == [0, 1, 2, 3]
    assert len(r["a_owned"]) == len(r["b_owned"]) == 2
    d = r["describe"]
    assert d["state"] == "Stable"
    assert d["members"] == {"franzgo-a": r["a_owned"], "franzgo-b": r["b_owned"]}
    if protocol == "classic":
        assert d["protocol"] == "cooperative-sticky"  # chosen by the members, relayed by skein
    else:
        # ConsumerGroupDescribe: kgo's sticky balancer asks for the server's "uniform" assignor.
        assert d["assignor"] == "uniform" and d["epoch_positive"]
        for m in "ab":
            assert d[f"franzgo-{m}_target"] == r[f"{m}_owned"] and d[f"franzgo-{m}_subscribed"] == [topic]
    for m in "ab":
        read = r[f"{m}_read"]
        assert sorted((x["p"], x["o"]) for x in read) == [(p, o) for p in r[f"{m}_owned"] for o in range(5)], m
    # b left: a holds all four and, for b's partitions, starts at b's commits (nothing re-read).
    assert r["a_owned_after_leave"] == [0, 1, 2, 3]
    assert sorted((x["p"], x["o"], x["v"]) for x in r["a_read_after_leave"]) == [
        (p, 5, f"after-leave-{p}") for p in range(4)
    ]
    # a never gave up the partitions it kept (cooperative): no revocation of them.
    for ev in r["a_events"]:
        if ev.startswith(("revoked", "lost")):
            assert not set(json.loads(ev.split(" ", 1)[1].replace(" ", ","))) & set(r["a_owned"]), r["a_events"]
    # A new member resumes at the committed offsets: only the records produced after a closed.
    assert sorted((x["p"], x["o"], x["v"]) for x in r["c_read"]) == [(p, 6, f"for-c-{p}") for p in range(4)]


def test_franz_go_kadm_admin(group_broker):
    topic = unique_topic("franzgo-admin")
    group = unique_topic("franzgo-admin-g")
    r = franzgo("admin", group_broker.bootstrap, topic, group)
    assert r["brokers"] == [f"1@{group_broker.bootstrap}"]
    assert r["create"] == {"err": "", "partitions": 2, "rf": 1, "id_set": True, "retention.ms": "3600000"}
    assert r["create_again"] == TOPIC_ALREADY_EXISTS
    assert r["create_bad_config"] == INVALID_CONFIG
    assert r["create_zero_partitions"] == INVALID_PARTITIONS
    assert r["describe"] == {"err": "", "partitions": 2, "internal": False, "id_matches": True}
    assert r["listed"] is True
    assert r["describe_missing"] == UNKNOWN_TOPIC_OR_PARTITION
    assert r["create_partitions"] == 0 and r["partitions_after"] == 4
    assert r["shrink_partitions"] == INVALID_PARTITIONS

    dyn, default = "DYNAMIC_TOPIC_CONFIG", "DEFAULT_CONFIG"
    assert r["configs"]["retention.ms"] == {"value": "3600000", "source": dyn}
    assert r["configs"]["cleanup.policy"] == {"value": "delete", "source": dyn}
    assert r["configs"]["segment.bytes"]["source"] == default
    assert r["alter_incremental"] == 0
    assert r["alter_bad_config"] == INVALID_CONFIG
    assert r["configs_after_incremental"]["segment.bytes"] == {"value": "1048576", "source": dyn}
    assert r["configs_after_incremental"]["retention.ms"] == {"value": "604800000", "source": default}
    assert r["configs_after_incremental"]["cleanup.policy"] == {"value": "delete", "source": dyn}
    # AlterConfigs (not incremental) replaces the topic's whole set: segment.bytes is back to its default.
    assert r["alter_state"] == 0
    assert r["configs_after_state"]["max.message.bytes"] == {"value": "200000", "source": dyn}
    assert r["configs_after_state"]["segment.bytes"]["source"] == default
    assert r["describe_configs_missing"] == UNKNOWN_TOPIC_OR_PARTITION

    # 10 records on partition 0 at base+0s..9s, 3 on partition 1 at base+0s..2s.
    base = r["base"]
    assert r["start_offsets"] == {str(p): [0, -1] for p in range(4)}
    assert r["end_offsets"] == {"0": [10, -1], "1": [3, -1], "2": [0, -1], "3": [0, -1]}
    # The first record at or after base+5.5s is offset 6 (base+6s); where there is none, kadm
    # reports the end offset (Kafka answers -1).
    assert r["offsets_after_base_plus_5500"] == {
        "0": [6, base + 6000],
        "1": [3, -1],
        "2": [0, -1],
        "3": [0, -1],
    }
    # The record with the largest timestamp (ListOffsets -3, KIP-734; skein served only up to v6
    # and answered INVALID_REQUEST before): offset 9 at base+9s, offset 2 at base+2s, none on the
    # empty partitions.
    assert r["max_timestamp_offsets"] == {
        "0": [9, base + 9000, 0],
        "1": [2, base + 2000, 0],
        "2": [-1, -1, 0],
        "3": [-1, -1, 0],
    }

    # The member read and committed 13 records; 2 more on partition 0 make its lag 2.
    assert r["list_groups"] == {"state": "Stable", "protocol_type": "consumer", "type": "classic"}
    dg = r["describe_group"]
    assert (dg["err"], dg["state"], dg["protocol_type"], dg["protocol"]) == ("", "Stable", "consumer", "cooperative-sticky")
    assert dg["members"] == [{"client_id": "franzgo-admin-member", "host": "/127.0.0.1", "assigned": [0, 1, 2, 3]}]
    assert dg["coordinator"] == 1
    assert r["committed"] == {"0": 10, "1": 3}
    assert r["lag"]["0"] == {"commit": 10, "end": 12, "lag": 2, "member": True, "err": ""}
    assert r["lag"]["1"] == {"commit": 3, "end": 3, "lag": 0, "member": True, "err": ""}
    assert r["lag"]["2"]["commit"] == -1 and r["lag"]["2"]["lag"] == 0
    assert r["lag_total"] == 2
    assert r["describe_missing_group"] == {"err": "GROUP_ID_NOT_FOUND", "state": "Dead"}
    assert r["delete_offsets_live"] == GROUP_SUBSCRIBED_TO_TOPIC
    assert r["delete_live_group"] == NON_EMPTY_GROUP
    assert r["delete_offsets_empty"] == 0
    assert r["committed_after_delete_offsets"] == {"0": 10}
    assert r["delete_empty_group"] == 0

    assert r["delete"] == 0
    assert r["delete_again"] == UNKNOWN_TOPIC_OR_PARTITION
    assert r["listed_after_delete"] is False
