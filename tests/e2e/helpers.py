"""Client helpers shared by the e2e tests (confluent-kafka / librdkafka 2.x)."""

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

# Keep client-side timeouts short enough that a broken broker fails a test quickly,
# but long enough for a 2-core CI machine.
COMMON = {
    "socket.timeout.ms": 10000,
    "socket.connection.setup.timeout.ms": 10000,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 500,
    "topic.metadata.refresh.interval.ms": 5000,
}


def recent_base_ts():
    """A millisecond timestamp an hour ago (whole seconds), for explicit record timestamps."""
    return (int(time.time()) - 3600) * 1000


def unique_topic(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class DeliveryLog:
    """Collects delivery reports: (key, value, error, partition, offset) per message."""

    def __init__(self):
        self.reports = []

    def __call__(self, err, msg):
        self.reports.append(
            {
                "err": err,
                "key": msg.key(),
                "value": msg.value(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "timestamp": msg.timestamp(),
            }
        )

    def errors(self):
        return [r for r in self.reports if r["err"] is not None]


def producer(bootstrap, **conf):
    c = {"bootstrap.servers": bootstrap, "message.timeout.ms": 30000}
    c.update(COMMON)
    c.update(conf)
    return Producer(c)


def consumer(bootstrap, **conf):
    c = {
        "bootstrap.servers": bootstrap,
        # group.id is set (confluent-kafka wants one) but no group API is used: the
        # tests assign() partitions with explicit offsets and never commit.
        "group.id": "skein-e2e-" + uuid.uuid4().hex[:8],
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
    }
    c.update(COMMON)
    c.update(conf)
    return Consumer(c)


def flush_all(p, timeout=30.0):
    """Flush and assert nothing is left in the producer's queue."""
    left = p.flush(timeout)
    assert left == 0, f"producer.flush({timeout}) left {left} message(s) undelivered"


def consume_exact(bootstrap, topic, partition, count, start=OFFSET_BEGINNING, timeout=30.0, **conf):
    """assign() one partition at `start`, read exactly `count` messages (fail on a
    timeout), then poll briefly to make sure nothing beyond them arrives.

    Returns a list of confluent_kafka.Message. Client-side errors (msg.error()) are
    collected and fail the call, with their text."""
    c = consumer(bootstrap, **conf)
    msgs, errors = [], []
    try:
        c.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout
        while len(msgs) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                errors.append(m.error())
                if len(errors) > 20:
                    break
                continue
            msgs.append(m)
        # Nothing more than what was produced.
        extra_deadline = time.monotonic() + 1.0
        while time.monotonic() < extra_deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                msgs.append(m)
    finally:
        c.close()
    assert not errors, f"consumer errors on {topic}[{partition}]: {[str(e) for e in errors]}"
    assert len(msgs) == count, (
        f"expected {count} messages from {topic}[{partition}], got {len(msgs)} within {timeout}s"
    )
    return msgs


def consume_until_end(bootstrap, topic, partition, timeout=30.0, **conf):
    """Read a partition from its beginning up to its high watermark (as the broker
    reports it at the start of the read). Returns the list of messages."""
    c = consumer(bootstrap, **conf)
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()
    return consume_exact(bootstrap, topic, partition, hi - lo, timeout=timeout, **conf), lo, hi
