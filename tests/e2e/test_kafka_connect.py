"""Apache Kafka Connect's own distributed worker (org.apache.kafka.connect.cli.ConnectDistributed,
connect-runtime and connect-file from Maven Central, resolved by ci/kafka.sh) against a skein broker.

Behaviour asserted (what the same worker does against Apache Kafka):
- the worker starts on skein: it creates its three internal topics (config, offset and status
  storage) with cleanup.policy=compact and the partitions and topic settings it was given
  (it also checks their cleanup policy itself with DescribeConfigs, and refuses to start on a
  topic that is not compacted), joins its group (the classic protocol with protocol type
  "connect"), and serves its REST API;
- a FileStreamSource connector created through the REST API (POST /connectors) runs with its
  task; the lines of its file reach the topic, in order, read back by confluent-kafka; its config,
  status and source offsets are records of the internal topics, under the keys Connect uses;
- the worker is stopped (SIGTERM) and started again: it reads its connector back from the config
  topic and the file position from the offset topic, so lines appended while it was down and
  after the restart are delivered and the earlier ones are not delivered twice;
- skein's cleaner (--log-cleaner-backoff-ms 500) compacts the internal topics, whose segments are
  small here (Connect passes offset.storage.segment.bytes etc. through CreateTopics): a read from
  the beginning skips the offsets it removed; a second restart then resumes from the compacted
  offset topic, again without a line lost or repeated.
Each worker start takes a few seconds of JVM start-up on 2 cores; the test takes about 35 s.
"""

import json
import os
import signal
import subprocess
import time
import traceback
import urllib.error
import urllib.request

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from conftest import REPO_ROOT, free_port
from helpers import consumer

KAFKA_SH = os.path.join(REPO_ROOT, "ci", "kafka.sh")

GROUP = "skein-connect"
CONFIG_TOPIC = "connect-configs"
OFFSET_TOPIC = "connect-offsets"
STATUS_TOPIC = "connect-status"
TOPIC = "file-lines"
CONNECTOR = "file-source"


def offset_key(source):
    """The key of the file's source offset in the offset topic, as Connect writes it."""
    return json.dumps([CONNECTOR, {"filename": source}], separators=(",", ":"))


def topic_settings(source):
    """Small segments and a low dirty ratio for the offset and status topics, so the cleaner has
    rolled segments to compact within the test (Connect adds cleanup.policy=compact itself).

    A segment must still hold the largest batch the worker writes: a larger one is refused with
    RecordBatchTooLargeException, by Kafka as by skein (the worker logs it as an ERROR). A status
    batch of 4 records is about 700 bytes. An offset batch holds one record, the file's key and
    {"position":N}: about 61 bytes of batch header + 10 of record header + key + value; its
    segments are one and a half of those, so each holds exactly one (and the cleaner has every
    record but the newest to remove)."""
    offset_batch = 61 + 10 + len(offset_key(source).encode()) + len('{"position":1234}')
    return {
        OFFSET_TOPIC: {
            "segment.bytes": str(offset_batch * 3 // 2),
            "min.cleanable.dirty.ratio": "0.01",
        },
        STATUS_TOPIC: {"segment.bytes": "1024", "min.cleanable.dirty.ratio": "0.01"},
        CONFIG_TOPIC: {},
    }


@pytest.fixture(scope="module")
def connect_ready():
    """Kafka Connect's jars (ci/kafka.sh resolves them once; ci/setup.sh does it beforehand)."""
    try:
        r = subprocess.run(
            [KAFKA_SH, "connect-classpath"], capture_output=True, text=True, timeout=600,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("ci/kafka.sh connect-classpath did not finish within 600 s", pytrace=False)
    if r.returncode != 0 or "connect-runtime" not in r.stdout:
        pytest.fail(
            "Kafka Connect is not available (Java 17+ and Maven are needed; run ./ci/setup.sh):\n"
            f"ci/kafka.sh connect-classpath exited {r.returncode}\n{r.stderr[-3000:]}",
            pytrace=False,
        )


class Worker:
    """One ConnectDistributed JVM (ci/kafka.sh connect-worker execs it), its REST API on
    127.0.0.1:<port>, its stdout+stderr appended to one log file across starts."""

    def __init__(self, tmp_path, bootstrap, settings_of_topics):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = str(tmp_path / "connect-worker.log")
        self.props = str(tmp_path / "connect-worker.properties")
        self.proc = None
        settings = {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "config.storage.topic": CONFIG_TOPIC,
            "offset.storage.topic": OFFSET_TOPIC,
            "status.storage.topic": STATUS_TOPIC,
            "config.storage.replication.factor": "1",
            "offset.storage.replication.factor": "1",
            "status.storage.replication.factor": "1",
            "offset.storage.partitions": "2",
            "status.storage.partitions": "1",
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.storage.StringConverter",
            "listeners": self.url,
            "rest.advertised.host.name": "127.0.0.1",
            "rest.advertised.port": str(self.port),
            # Commit source offsets often; no delay before a departed worker's tasks are
            # reassigned; the file connectors are found by ServiceLoader on the classpath (no
            # reflective scan of every jar).
            "offset.flush.interval.ms": "500",
            "scheduled.rebalance.max.delay.ms": "0",
            "plugin.discovery": "service_load",
            "session.timeout.ms": "6000",
            "heartbeat.interval.ms": "1000",
        }
        for prefix, topic in (("offset.storage.", OFFSET_TOPIC), ("status.storage.", STATUS_TOPIC)):
            for k, v in settings_of_topics[topic].items():
                settings[prefix + k] = v
        with open(self.props, "w") as f:
            f.write("# written by tests/e2e/test_kafka_connect.py\n")
            for k, v in settings.items():
                f.write(f"{k}={v}\n")

    def start(self):
        assert not self.alive(), "worker already running"
        with open(self.log_path, "a") as f:
            f.write(f"\n===== [e2e harness {time.strftime('%H:%M:%S')}] worker start =====\n")
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [KAFKA_SH, "connect-worker", self.props],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        finally:
            logf.close()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM (the worker leaves its group and commits its tasks' offsets), SIGKILL after
        `timeout` s. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the Connect worker did not stop within {timeout} s of SIGTERM")

    def rest(self, method, path, body=None, timeout=10):
        """(status, parsed JSON or text) of one REST call."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def wait_rest(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"the Connect worker exited with code {self.proc.returncode}")
            try:
                status, body = self.rest("GET", "/", timeout=2)
                if status == 200 and isinstance(body, dict) and "version" in body:
                    return body
            except OSError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"the Connect worker's REST API did not answer within {timeout} s")

    def log_lines(self):
        """The log without the config dumps (an "X values:" line, tab-indented "key = value"
        lines, and a line closing the dump)."""
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ["(no worker log)"]
        return [
            line for line in text
            if not (line.startswith("\t") and " = " in line)
            and not line.endswith(" values: ")
            and line != " (org.apache.kafka.common.config.AbstractConfig)"
        ]

    def errors(self):
        """The worker's ERROR lines, each with the line after it (the exception)."""
        kept = self.log_lines()
        return [f"{line}\n{kept[i + 1] if i + 1 < len(kept) else ''}"
                for i, line in enumerate(kept) if " ERROR " in line]

    def log_tail(self, lines=80):
        kept = self.log_lines()
        problems = [line for line in kept if " ERROR " in line or " WARN " in line][:25]
        return (
            f"--- Connect worker: first ERROR/WARN lines ({self.log_path}) ---\n"
            + "\n".join(problems)
            + f"\n--- Connect worker log tail ---\n" + "\n".join(kept[-lines:])
            + "\n--- end of Connect worker log ---"
        )


def wait_until(what, fn, timeout, interval=0.25):
    """fn() until it returns a truthy value (returned); AssertionError naming `what` and the
    last value after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def connector_running(worker):
    status, body = worker.rest("GET", f"/connectors/{CONNECTOR}/status")
    if status != 200:
        return None
    tasks = body.get("tasks", [])
    if body["connector"]["state"] == "RUNNING" and tasks and all(t["state"] == "RUNNING" for t in tasks):
        return body
    for t in tasks:
        assert t["state"] != "FAILED", f"the connector's task failed: {t.get('trace', t)}"
    return None


def stored_position(worker):
    """The source offset the worker committed for the file (GET /connectors/NAME/offsets)."""
    status, body = worker.rest("GET", f"/connectors/{CONNECTOR}/offsets")
    if status != 200:
        return None
    positions = [o["offset"].get("position") for o in body.get("offsets", [])]
    return positions[0] if len(positions) == 1 else None


def read_partition(bootstrap, topic, partition, timeout=20):
    """Every record of a partition from its beginning up to its current high watermark:
    [(offset, key, value)] (keys and values decoded)."""
    c = consumer(bootstrap, **{"enable.partition.eof": True})
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
        out = []
        if hi == lo:
            return out, lo, hi
        c.assign([TopicPartition(topic, partition, lo)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, f"{topic}[{partition}]: {m.error()}"
                if out and out[-1][0] >= hi - 1:
                    break
                continue
            dec = lambda b: b.decode("utf-8", "replace") if b is not None else None  # noqa: E731
            out.append((m.offset(), dec(m.key()), dec(m.value())))
            if m.offset() >= hi - 1:
                break
        assert out and out[-1][0] >= hi - 1, (
            f"{topic}[{partition}]: read up to {out[-1][0] if out else None} of high watermark {hi} "
            f"within {timeout} s"
        )
        return out, lo, hi
    finally:
        c.close()


def topic_values(bootstrap):
    records, _, _ = read_partition(bootstrap, TOPIC, 0)
    return [v for _, _, v in records]


def append(path, lines):
    with open(path, "a") as f:
        for line in lines:
            f.write(line + "\n")


def wait_delivered(bootstrap, worker, path, expected):
    """Every line of the file is in the topic, in order, exactly once, and the worker has
    committed the file's whole length as its source offset (so nothing more is on its way)."""
    size = os.path.getsize(path)
    wait_until(
        f"the worker's committed position in {path} reaching its size {size}",
        lambda: stored_position(worker) == size, 30,
    )
    wait_until(
        f"{len(expected)} lines in {TOPIC}",
        lambda: len(topic_values(bootstrap)) >= len(expected), 20, interval=0.5,
    )
    values = topic_values(bootstrap)
    assert values == expected, f"{TOPIC} holds {values}, expected {expected}"


def check_internal_topics(bootstrap, settings_of_topics):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=10)
    partitions = {t: len(md.topics[t].partitions) for t in (CONFIG_TOPIC, OFFSET_TOPIC, STATUS_TOPIC)
                  if t in md.topics}
    assert partitions == {CONFIG_TOPIC: 1, OFFSET_TOPIC: 2, STATUS_TOPIC: 1}, partitions
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in partitions]
    for res, fut in admin.describe_configs(resources).items():
        cfg = {k: e.value for k, e in fut.result(10).items()}
        assert cfg["cleanup.policy"] == "compact", (res.name, cfg["cleanup.policy"])
        for k, v in settings_of_topics[res.name].items():
            assert cfg[k] == v, (res.name, k, cfg[k])


def keyed(records):
    """{key: [values]} of [(offset, key, value)]."""
    out = {}
    for _, k, v in records:
        out.setdefault(k, []).append(v)
    return out


def test_kafka_connect_distributed_worker_file_source(broker_factory, connect_ready, tmp_path):
    broker = broker_factory(
        extra_args=["--log-cleaner-backoff-ms", "500", "--group-initial-rebalance-delay-ms", "0"]
    ).start()
    bs = broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(20)
    source = str(tmp_path / "source.txt")
    expected = [f"line {i}: {'x' * (i % 7)}" for i in range(1, 6)]
    append(source, expected)

    settings = topic_settings(source)
    worker = Worker(tmp_path, bs, settings)
    t0 = time.monotonic()
    phases = []
    try:
        # 1. The worker starts, creates its compacted internal topics and runs the connector.
        worker.start()
        info = worker.wait_rest()
        assert info["kafka_cluster_id"], info
        phases.append(("worker up", time.monotonic() - t0))
        check_internal_topics(bs, settings)

        status, plugins = worker.rest("GET", "/connector-plugins")
        assert status == 200, plugins
        classes = {p["class"] for p in plugins}
        assert "org.apache.kafka.connect.file.FileStreamSourceConnector" in classes, plugins

        status, body = worker.rest("POST", "/connectors", {
            "name": CONNECTOR,
            "config": {
                "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                "tasks.max": "1",
                "file": source,
                "topic": TOPIC,
            },
        })
        assert status == 201, (status, body)
        body = wait_until("the connector and its task RUNNING", lambda: connector_running(worker), 60)
        assert [t["id"] for t in body["tasks"]] == [0], body
        wait_delivered(bs, worker, source, expected)
        phases.append(("lines delivered", time.monotonic() - t0))

        # The worker's state is in its internal topics, under Connect's keys.
        configs = keyed(read_partition(bs, CONFIG_TOPIC, 0)[0])
        want = {f"connector-{CONNECTOR}", f"task-{CONNECTOR}-0", f"commit-{CONNECTOR}"}
        assert want <= set(configs), configs
        conf = json.loads(configs[f"connector-{CONNECTOR}"][-1])
        assert conf["properties"]["file"] == source, conf
        statuses = keyed(read_partition(bs, STATUS_TOPIC, 0)[0])
        assert json.loads(statuses[f"status-connector-{CONNECTOR}"][-1])["state"] == "RUNNING", statuses
        assert json.loads(statuses[f"status-task-{CONNECTOR}-0"][-1])["state"] == "RUNNING", statuses
        key = offset_key(source)
        stored = {}
        for p in range(2):
            for _, k, v in read_partition(bs, OFFSET_TOPIC, p)[0]:
                stored.setdefault(k, []).append((p, json.loads(v) if v else None))
        assert key in stored, stored
        assert stored[key][-1][1] == {"position": os.path.getsize(source)}, stored

        # 2. Restart: lines appended while the worker is down and after it is back are
        # delivered once; the first ones are not read again.
        rc = worker.stop()
        assert rc in (0, 143), f"the worker exited with code {rc} on SIGTERM"
        down = [f"written while the worker was down {i}" for i in range(3)]
        append(source, down)
        expected += down
        worker.start()
        worker.wait_rest()
        wait_until("the connector and its task RUNNING after the restart",
                   lambda: connector_running(worker), 60)
        wait_delivered(bs, worker, source, expected)
        after = [f"written after the restart {i}" for i in range(3)]
        append(source, after)
        expected += after
        wait_delivered(bs, worker, source, expected)
        phases.append(("restart 1 resumed", time.monotonic() - t0))

        # 3. The cleaner compacts the internal topics: old status and source-offset records are
        # removed (a read from the beginning skips their offsets); the newest stay.
        def compacted(topic, partitions):
            for p in range(partitions):
                records, lo, hi = read_partition(bs, topic, p)
                if records and len(records) < hi - lo:
                    return (p, len(records), lo, hi)
            return None

        cleaned = {
            topic: wait_until(f"{topic} compacted", lambda: compacted(topic, n), 30, interval=0.5)
            for topic, n in ((STATUS_TOPIC, 1), (OFFSET_TOPIC, 2))
        }
        stored = {}
        for p in range(2):
            for _, k, v in read_partition(bs, OFFSET_TOPIC, p)[0]:
                stored.setdefault(k, []).append(json.loads(v) if v else None)
        assert stored[key][-1] == {"position": os.path.getsize(source)}, stored
        phases.append(("internal topics compacted", time.monotonic() - t0))

        # 4. A second restart reads the compacted topics back and resumes where it stopped.
        rc = worker.stop()
        assert rc in (0, 143), f"the worker exited with code {rc} on SIGTERM"
        worker.start()
        worker.wait_rest()
        wait_until("the connector and its task RUNNING after the second restart",
                   lambda: connector_running(worker), 60)
        last = [f"written after the second restart {i}" for i in range(2)]
        append(source, last)
        expected += last
        wait_delivered(bs, worker, source, expected)
        phases.append(("restart 2 resumed", time.monotonic() - t0))
        check_internal_topics(bs, settings)
        broker.assert_alive()
        errors = worker.errors()
        assert not errors, "the worker logged errors:\n" + "\n".join(errors[:10])
        print("phases: " + ", ".join(f"{name} {t:.1f}s" for name, t in phases))
        print("compacted (partition, records read, log start, high watermark): " + repr(cleaned))
    except Exception:
        # The failing lines and what the worker logged (conftest.py adds the broker's log tail).
        pytest.fail(
            f"{traceback.format_exc(limit=-3)}\nphases done: {phases}\n{worker.log_tail()}",
            pytrace=False,
        )
    finally:
        worker.stop()
