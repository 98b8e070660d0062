"""Apache Kafka brokers for the side-by-side benchmark, started through ci/kafka.sh.

A KafkaCluster has the interface of bench.py's skein Cluster (bootstrap, first, brokers,
create_topic, mark, measure, stop, root), so every workload runs unchanged against either.
Kafka runs with its defaults (ci/kafka.sh's server.properties: KRaft combined mode, loopback
listeners) and an explicit heap (-Xms = -Xmx = KAFKA_HEAP, 1 GiB per broker here); the
`kafka-flush` variant creates each topic with flush.messages=1, so Kafka fsyncs every append
before it acknowledges, as skein does for acks=all.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
KAFKA_PORT = 39092
KAFKA_HEAP = "1g"


class KafkaNode:
    """One running Kafka JVM, found by the pid file ci/kafka.sh wrote."""

    def __init__(self, node_dir):
        self.dir = Path(node_dir)
        self.pid = int((self.dir / "kafka.pid").read_text())

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status_kib(self, key):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0


class KafkaCluster:
    """1 or 3 Apache Kafka nodes on loopback; wiped and started fresh for each run."""

    def __init__(self, cfg, n, flush=False):
        self.cfg = cfg
        self.n = n
        self.flush = flush
        self.root = Path(cfg.work) / "kafka-cluster"
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.env = dict(os.environ, KAFKA_HEAP=KAFKA_HEAP, KAFKA_STOP_TIMEOUT="20")
        if n == 1:
            self._kafka_sh("start-broker", self.root, KAFKA_PORT)
            dirs = [self.root]
            ports = [KAFKA_PORT]
        elif n == 3:
            self._kafka_sh("start-cluster", self.root, KAFKA_PORT)
            dirs = [self.root / f"n{i}" for i in (1, 2, 3)]
            ports = [KAFKA_PORT + 100 * i for i in range(3)]
        else:
            raise ValueError(f"a Kafka cluster of 1 or 3 nodes, not {n}")
        self.brokers = [KafkaNode(d) for d in dirs]
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in ports)
        self.first = f"127.0.0.1:{ports[0]}"
        self.cpu0 = None

    def _kafka_sh(self, *args, timeout=180):
        r = subprocess.run([self.cfg.kafka_sh, *map(str, args)], capture_output=True, text=True,
                           env=self.env, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"ci/kafka.sh {' '.join(map(str, args))}: {r.stderr[-3000:]}")
        return r.stdout

    def tool(self, *args, check=True):
        """One of Kafka's command-line tools against this cluster."""
        return subprocess.run([self.cfg.kafka_sh, "tool", *map(str, args)],
                              capture_output=True, text=True, check=check, timeout=120)

    def create_topic(self, name, partitions, rf, configs=()):
        configs = list(configs) + (["flush.messages=1"] if self.flush else [])
        args = ["kafka-topics", "--bootstrap-server", self.first, "--create", "--topic", name,
                "--partitions", partitions, "--replication-factor", rf]
        for c in configs:
            args += ["--config", c]
        r = self.tool(*args, check=False)
        if r.returncode != 0 and "already exists" not in r.stdout + r.stderr:
            raise RuntimeError(f"Kafka topic {name} not created: {r.stderr[-2000:]}")
        # Wait until every partition has a leader and a full ISR.
        deadline = time.monotonic() + 60
        while True:
            r = self.tool("kafka-topics", "--bootstrap-server", self.first, "--describe",
                          "--topic", name, check=False)
            rows = [l for l in r.stdout.splitlines() if "Partition:" in l]
            isr = [re.search(r"Isr: ([\d,]+)", l) for l in rows]
            if len(rows) == partitions and all(
                    m and len(m[1].split(",")) == rf for m in isr) and all(
                    re.search(r"Leader: \d+", l) for l in rows):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka topic {name} not ready:\n{r.stdout}{r.stderr}")
            time.sleep(0.5)

    def mark(self):
        """Start of the measured part: CPU counters from here."""
        self.cpu0 = [b.cpu_seconds() for b in self.brokers]

    def measure(self):
        cpu = sum(b.cpu_seconds() - c for b, c in zip(self.brokers, self.cpu0))
        hwm = max(b.status_kib("VmHWM") for b in self.brokers) * 1024
        return cpu, hwm

    def stop(self):
        try:
            if self.n == 1:
                self._kafka_sh("stop-broker", self.root)
            else:
                self._kafka_sh("stop-cluster", self.root)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            os.sync()
