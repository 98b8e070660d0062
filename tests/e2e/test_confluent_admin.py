"""confluent-kafka AdminClient against skein.

Kafka behaviour asserted here (error names as the protocol has them):
- CreateTopics: partitions and configs; validate_only creates nothing; an existing
  name -> TOPIC_ALREADY_EXISTS; an illegal name -> INVALID_TOPIC_EXCEPTION; a bad
  config value -> INVALID_CONFIG; cleanup.policy=compact accepted, a policy that is
  neither delete nor compact -> INVALID_CONFIG; 0 partitions -> INVALID_PARTITIONS.
- DescribeConfigs: topic overrides show their value with source DYNAMIC_TOPIC_CONFIG;
  other keys show their defaults.
- IncrementalAlterConfigs: SET changes a value, DELETE reverts it to the default;
  an unknown topic -> UNKNOWN_TOPIC_OR_PARTITION.
- CreatePartitions: grow the count; shrinking or same count -> INVALID_PARTITIONS.
- DeleteTopics: the topic disappears; an unknown topic -> UNKNOWN_TOPIC_OR_PARTITION.
- Metadata (list_topics) and DescribeCluster: one broker (id 1, advertised
  127.0.0.1:PORT), controller 1, a cluster id.
"""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from helpers import COMMON, unique_topic

T = 20  # seconds per admin future


@pytest.fixture
def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap, **COMMON})


def err_code(fut):
    """The KafkaError code a future fails with (None if it succeeds)."""
    try:
        fut.result(T)
    except KafkaException as e:
        return e.args[0].code()
    return None


# Kafka protocol error codes by their protocol names (librdkafka's own names differ,
# e.g. TOPIC_EXCEPTION, UNKNOWN_TOPIC_OR_PART).
PROTOCOL_ERRORS = {
    3: "UNKNOWN_TOPIC_OR_PARTITION",
    17: "INVALID_TOPIC_EXCEPTION",
    36: "TOPIC_ALREADY_EXISTS",
    37: "INVALID_PARTITIONS",
    38: "INVALID_REPLICATION_FACTOR",
    40: "INVALID_CONFIG",
    42: "INVALID_REQUEST",
    35: "UNSUPPORTED_VERSION",
}


def err_name(code):
    """The protocol's name for a KafkaError code (librdkafka's name for local errors)."""
    if code is None:
        return None
    return PROTOCOL_ERRORS.get(code) or KafkaError(code).name()


def create(admin, topic, partitions=1, config=None, validate_only=False):
    fs = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10,
        validate_only=validate_only,
    )
    return fs[topic]


def topics(admin):
    return admin.list_topics(timeout=T).topics


def wait_for(pred, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


DYNAMIC_TOPIC = ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def src(entry):
    """A ConfigEntry's source as the protocol's number (1 = DYNAMIC_TOPIC_CONFIG)."""
    return getattr(entry.source, "value", entry.source)


def describe_topic_configs(admin, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    fs = admin.describe_configs([res])
    return fs[res].result(T)


def test_create_topic_with_partitions_and_config(admin):
    topic = unique_topic("adm-create")
    assert err_code(create(admin, topic, 3, {"retention.ms": "3600000", "segment.bytes": "1048576"})) is None
    md = topics(admin)
    assert topic in md, f"{topic} not listed after CreateTopics"
    assert sorted(md[topic].partitions) == [0, 1, 2]
    for p in md[topic].partitions.values():
        assert p.leader == 1 and p.replicas == [1] and p.isrs == [1], p
        assert p.error is None, p.error

    cfg = describe_topic_configs(admin, topic)
    assert cfg["retention.ms"].value == "3600000"
    assert src(cfg["retention.ms"]) == DYNAMIC_TOPIC, cfg["retention.ms"]
    assert not cfg["retention.ms"].is_default
    assert cfg["segment.bytes"].value == "1048576"
    # Kafka defaults for keys the topic did not override.
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["retention.bytes"].value == "-1"
    assert cfg["message.timestamp.type"].value == "CreateTime"
    assert src(cfg["cleanup.policy"]) != DYNAMIC_TOPIC


def test_validate_only_creates_nothing(admin):
    topic = unique_topic("adm-validate")
    assert err_code(create(admin, topic, 2, validate_only=True)) is None
    time.sleep(0.5)
    assert topic not in topics(admin), "validate_only=True created the topic"
    # validate_only still validates.
    assert err_name(err_code(create(admin, "bad name!", validate_only=True))) == "INVALID_TOPIC_EXCEPTION"


def test_create_existing_topic(admin):
    topic = unique_topic("adm-exists")
    assert err_code(create(admin, topic)) is None
    assert err_name(err_code(create(admin, topic))) == "TOPIC_ALREADY_EXISTS"
    assert err_name(err_code(create(admin, topic, validate_only=True))) == "TOPIC_ALREADY_EXISTS"


@pytest.mark.parametrize("name", ["bad name!", "a/b", ".", "..", "x" * 250, "ünïcode"])
def test_create_invalid_topic_name(admin, name):
    # Kafka's rule: [a-zA-Z0-9._-]{1,249}, and not "." or "..".
    assert err_name(err_code(create(admin, name))) == "INVALID_TOPIC_EXCEPTION"


def test_create_invalid_config_and_partitions(admin):
    assert err_name(err_code(create(admin, unique_topic("adm-badcfg"), 1, {"retention.ms": "soon"}))) == "INVALID_CONFIG"
    assert err_code(create(admin, unique_topic("adm-compact"), 1, {"cleanup.policy": "compact"})) is None
    assert err_name(err_code(create(admin, unique_topic("adm-policy"), 1, {"cleanup.policy": "shred"}))) == "INVALID_CONFIG"
    assert err_name(err_code(create(admin, unique_topic("adm-unknowncfg"), 1, {"no.such.config": "1"}))) == "INVALID_CONFIG"
    bad_parts = NewTopic(unique_topic("adm-zero"), num_partitions=0, replication_factor=1)
    fs = admin.create_topics([bad_parts], operation_timeout=10)
    assert err_name(err_code(fs[bad_parts.topic])) == "INVALID_PARTITIONS"


def test_incremental_alter_configs(admin):
    topic = unique_topic("adm-alter")
    assert err_code(create(admin, topic, 1, {"retention.ms": "3600000"})) is None

    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    fs = admin.incremental_alter_configs([res])
    fs[res].result(T)
    cfg = describe_topic_configs(admin, topic)
    assert cfg["retention.ms"].value == "7200000"
    assert cfg["max.message.bytes"].value == "2000000"
    assert src(cfg["max.message.bytes"]) == DYNAMIC_TOPIC

    # DELETE reverts to the default (Kafka's retention.ms default: 7 days).
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)],
    )
    admin.incremental_alter_configs([res])[res].result(T)
    cfg = describe_topic_configs(admin, topic)
    assert cfg["retention.ms"].value == "604800000"
    assert src(cfg["retention.ms"]) != DYNAMIC_TOPIC
    assert cfg["max.message.bytes"].value == "2000000"  # untouched

    # An invalid value is refused and changes nothing.
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", "never", incremental_operation=AlterConfigOpType.SET)],
    )
    assert err_name(err_code(admin.incremental_alter_configs([res])[res])) == "INVALID_CONFIG"
    assert describe_topic_configs(admin, topic)["retention.ms"].value == "604800000"

    # Unknown topic.
    res = ConfigResource(
        ResourceType.TOPIC,
        unique_topic("adm-nosuch"),
        incremental_configs=[ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)],
    )
    assert err_name(err_code(admin.incremental_alter_configs([res])[res])) == "UNKNOWN_TOPIC_OR_PARTITION"


def test_create_partitions(admin):
    topic = unique_topic("adm-parts")
    assert err_code(create(admin, topic, 2)) is None
    fs = admin.create_partitions([NewPartitions(topic, 5)], operation_timeout=10)
    fs[topic].result(T)
    wait_for(lambda: len(topics(admin)[topic].partitions) == 5, "5 partitions in metadata")
    assert sorted(topics(admin)[topic].partitions) == [0, 1, 2, 3, 4]
    # Kafka: the count can only grow.
    fs = admin.create_partitions([NewPartitions(topic, 3)], operation_timeout=10)
    assert err_name(err_code(fs[topic])) == "INVALID_PARTITIONS"
    fs = admin.create_partitions([NewPartitions(topic, 5)], operation_timeout=10)
    assert err_name(err_code(fs[topic])) == "INVALID_PARTITIONS"
    nosuch = unique_topic("adm-nosuch")
    fs = admin.create_partitions([NewPartitions(nosuch, 3)], operation_timeout=10)
    assert err_name(err_code(fs[nosuch])) == "UNKNOWN_TOPIC_OR_PARTITION"


def test_delete_topics(admin, broker):
    topic = unique_topic("adm-delete")
    assert err_code(create(admin, topic, 2)) is None
    assert topic in topics(admin)
    fs = admin.delete_topics([topic], operation_timeout=10)
    fs[topic].result(T)
    wait_for(lambda: topic not in topics(admin), f"{topic} gone from metadata")
    nosuch = unique_topic("adm-nosuch")
    fs = admin.delete_topics([nosuch], operation_timeout=10)
    assert err_name(err_code(fs[nosuch])) == "UNKNOWN_TOPIC_OR_PARTITION"
    # A deleted topic's name can be created again, empty.
    assert err_code(create(admin, topic, 1)) is None
    # Deletion survives a restart: the topic does not come back.
    topic2 = unique_topic("adm-delete2")
    assert err_code(create(admin, topic2, 1)) is None
    admin.delete_topics([topic2], operation_timeout=10)[topic2].result(T)
    assert broker.restart() == 0, "broker did not exit 0 on SIGTERM"
    admin2 = AdminClient({"bootstrap.servers": broker.bootstrap, **COMMON})
    md = admin2.list_topics(timeout=T).topics
    assert topic2 not in md, "deleted topic reappeared after restart"
    assert topic in md, "re-created topic missing after restart"


def test_list_topics_and_describe_cluster(admin, broker):
    topic = unique_topic("adm-list")
    assert err_code(create(admin, topic, 2)) is None
    md = admin.list_topics(timeout=T)
    assert set(md.brokers) == {1}
    b = md.brokers[1]
    assert (b.host, b.port) == ("127.0.0.1", broker.port)
    assert md.controller_id == 1
    assert md.cluster_id, "Metadata has no cluster id"
    assert topic in md.topics

    one = admin.list_topics(topic=topic, timeout=T)
    assert list(one.topics) == [topic]

    dc = admin.describe_cluster(request_timeout=T).result(T)
    assert [(n.id, n.host, n.port) for n in dc.nodes] == [(1, "127.0.0.1", broker.port)]
    assert dc.controller is not None and dc.controller.id == 1
    assert dc.cluster_id == md.cluster_id, "DescribeCluster and Metadata disagree on the cluster id"
