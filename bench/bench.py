#!/usr/bin/env python3
"""skein's benchmark: workloads W1-W7 and a produce flood against real skein brokers, driven by
librdkafka's rdkafka_performance (and, for the rate-limited latency workloads, bench/rate_producer.c,
a librdkafka producer that sleeps between ticks), plus this machine's limits measured in the same
run.

Run it through `bench/run`, which builds the broker and the load generator first. Each workload
runs `--runs` times (default 3) on freshly started brokers with empty data directories; the
report gives the median with min and max. Output: results/<timestamp>/results.json and
results/<timestamp>/results.svg (also copied to results/latest.*), and a Markdown table on stdout.
"""

import argparse
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import java_perf
from compare import FSYNC_WORKLOADS, compare_json, compare_markdown
from kafka_cluster import KAFKA_HEAP, KafkaCluster
from report import aggregate, binding, markdown, svg_plot

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# Brokers listen for clients on BASE_PORT, +100, +200, and for each other one port above.
BASE_PORT = 29092


# --------------------------------------------------------------------------------------------
# Brokers


class Broker:
    """One skein broker process with its own data directory."""

    def __init__(self, skein, node_id, port, data_dir, voters=None, extra=()):
        self.port = port
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            skein, "broker",
            "--node-id", str(node_id),
            "--listen", f"127.0.0.1:{port}",
            "--data-dir", str(self.data_dir),
            "--log-level", "warn",
            "--offsets-topic-replication-factor", "1",
        ]
        if voters:
            args += ["--voters", voters]
        args += list(extra)
        self.log = open(self.data_dir.parent / f"broker-{node_id}.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status_kib(self, key):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Cluster:
    """1 or 3 brokers on loopback; wiped and started fresh for each run."""

    def __init__(self, cfg, n, extra=()):
        self.cfg = cfg
        root = Path(cfg.work) / "cluster"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        base = BASE_PORT
        ports = [base + 100 * i for i in range(n)]
        voters = None
        if n > 1:
            voters = ",".join(f"{i + 1}@127.0.0.1:{p + 1}" for i, p in enumerate(ports))
        extra = list(extra) + list(cfg.broker_arg or [])
        self.brokers = [
            Broker(cfg.skein, i + 1, p, root / f"d{i + 1}", voters, extra)
            for i, p in enumerate(ports)
        ]
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in ports)
        self.first = f"127.0.0.1:{ports[0]}"
        self.root = root
        self.cpu0 = None

    def skein(self, *args, check=True):
        return subprocess.run(
            [self.cfg.skein, *args, "--bootstrap", self.first],
            capture_output=True, text=True, check=check, timeout=60,
        )

    def create_topic(self, name, partitions, rf, configs=()):
        deadline = time.monotonic() + 60
        args = ["topics", "create", name, "--partitions", str(partitions),
                "--replication-factor", str(rf)]
        for c in configs:
            args += ["--config", c]
        while True:
            r = self.skein(*args, check=False)
            if r.returncode == 0 or "already exists" in (r.stdout + r.stderr):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} not created: {r.stderr.strip()}")
            time.sleep(0.3)
        # Wait until every partition has a leader and a full ISR.
        while True:
            r = self.skein("topics", "describe", name, check=False)
            rows = [l for l in r.stdout.splitlines() if "Partition:" in l]
            ok = len(rows) == partitions and all(
                re.search(r"Leader: \d+", l)
                and len(l.split("Isr:")[1].strip().split(",")) == rf
                for l in rows
            )
            if ok:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} not ready:\n{r.stdout}{r.stderr}")
            time.sleep(0.3)

    def mark(self):
        """Start of the measured part: CPU counters from here."""
        self.cpu0 = [b.cpu_seconds() for b in self.brokers]

    def measure(self):
        cpu = sum(b.cpu_seconds() - c for b, c in zip(self.brokers, self.cpu0))
        hwm = max(b.status_kib("VmHWM") for b in self.brokers) * 1024
        return cpu, hwm

    def stop(self):
        for b in self.brokers:
            b.stop()
        for b in self.brokers:
            if b.proc.returncode not in (0, None):
                log(f"broker exited with {b.proc.returncode}; see {b.log.name}")
        shutil.rmtree(self.root, ignore_errors=True)
        os.sync()


def new_cluster(cfg, n, extra=()):
    """A fresh cluster of the system under test (cfg.system): skein, or Apache Kafka with its
    defaults ("kafka") or with flush.messages=1 ("kafka-flush"). skein's own broker flags
    (`extra`, e.g. W7i's --flush-ms) do not apply to Kafka."""
    if cfg.system == "skein":
        return Cluster(cfg, n, extra)
    return KafkaCluster(cfg, n, flush=cfg.system == "kafka-flush")


def scaled(cfg, n):
    """Record count for this system: Kafka fsyncing every append is one to two orders slower,
    so its flush variant sends a tenth (a rate is compared, not a total)."""
    return max(1, n // cfg.flush_divisor) if cfg.system == "kafka-flush" else n


# --------------------------------------------------------------------------------------------
# Clients


class Client:
    """A load-generator process, with its CPU time from wait4. Its output is read as it comes
    (a thread drains the pipe), so a chatty client never blocks on a full pipe mid-run."""

    def __init__(self, args, env=None):
        import threading

        self.args = [str(a) for a in args]
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        self.out = b""
        self._chunks = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self):
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 1 << 16)
            if not data:
                return
            self._chunks.append(data)

    def running(self):
        """True while the process has not exited (without reaping it)."""
        r = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return r is None

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        timed_out = self.running()
        if timed_out:
            self.proc.kill()
        _, status, ru = os.wait4(self.proc.pid, 0)
        self._reader.join(timeout=10)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.wall = time.monotonic() - self.t0
        self.cpu = ru.ru_utime + ru.ru_stime
        self.out = b"".join(self._chunks).decode(errors="replace")
        if timed_out:
            raise RuntimeError(f"timed out: {' '.join(self.args)}\n{self.out[-2000:]}")
        return self.out


PRODUCED = re.compile(
    r"(\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset -?\d+, (\d+) failed\) "
    r"in (\d+)ms: (\d+) msgs/s"
)
CONSUMED = re.compile(r"(\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s")


def perf_produce(cfg, bootstrap, topic, count, size, acks, props):
    args = [cfg.rdkafka_performance, "-P", "-t", topic, "-b", bootstrap, "-s", size,
            "-c", count, "-a", acks]
    for k, v in props.items():
        args += ["-X", f"{k}={v}"]
    return Client(args)


def parse_produced(out):
    m = PRODUCED.findall(out)
    if not m:
        raise RuntimeError(f"no producer summary in output:\n{out[-2000:]}")
    msgs, byts, delivered, failed, ms, _ = (int(x) for x in m[-1])
    return {"sent": msgs, "delivered": delivered, "failed": failed,
            "bytes": byts * delivered // max(msgs, 1), "ms": ms}


def perf_consume(cfg, bootstrap, topic, partitions, count):
    args = [cfg.rdkafka_performance, "-C", "-t", topic, "-b", bootstrap, "-o", "beginning",
            "-c", count, "-X", "fetch.wait.max.ms=100"]
    for p in range(partitions):
        args += ["-p", p]
    return Client(args)


def parse_consumed(out):
    m = CONSUMED.findall(out)
    if not m:
        raise RuntimeError(f"no consumer summary in output:\n{out[-2000:]}")
    msgs, byts, ms, _ = (int(x) for x in m[-1])
    return {"received": msgs, "bytes": byts, "ms": ms}


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, int(round(q / 100.0 * len(xs) + 0.5)) - 1))
    return xs[i]


def latency_summary(us):
    return {
        "count": len(us),
        "p50_ms": pct(us, 50) / 1000 if us else None,
        "p99_ms": pct(us, 99) / 1000 if us else None,
        "p99_9_ms": pct(us, 99.9) / 1000 if us else None,
        "max_ms": max(us) / 1000 if us else None,
    }


# --------------------------------------------------------------------------------------------
# Machine limits


def _accept_one(port_q):
    """Listens on a free loopback port, tells it through `port_q`, and accepts one connection."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port_q.put(s.getsockname()[1])
    c, _ = s.accept()
    s.close()
    return c


def _tcp_sink(port_q, secs_q):
    c = _accept_one(port_q)
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    total = 0
    while True:
        n = c.recv_into(view)
        if n == 0:
            break
        total += n
    c.sendall(b"k")
    secs_q.put(total)


def limit_loopback_tcp(seconds):
    """Loopback TCP bandwidth, one stream, bytes/s."""
    port_q, total_q = multiprocessing.Queue(), multiprocessing.Queue()
    sink = multiprocessing.Process(target=_tcp_sink, args=(port_q, total_q))
    sink.start()
    port = port_q.get(timeout=10)
    s = socket.create_connection(("127.0.0.1", port))
    buf = b"\0" * (4 << 20)
    t0 = time.perf_counter()
    sent = 0
    while time.perf_counter() - t0 < seconds:
        s.sendall(buf)
        sent += len(buf)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    dt = time.perf_counter() - t0
    s.close()
    got = total_q.get(timeout=10)
    sink.join()
    assert got == sent
    return sent / dt


def _echo(port_q, n):
    c = _accept_one(port_q)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(1024)
    for _ in range(n):
        got = 0
        while got < 1024:
            k = c.recv_into(memoryview(buf)[got:])
            if k == 0:
                return  # the measuring side went away
            got += k
        c.sendall(b"r" * 100)


def limit_loopback_rtt(n):
    """Round trip between two processes on loopback TCP (1 KiB request, 100 B reply), each
    side blocked in recv between messages as a broker is: seconds per round trip."""
    port_q = multiprocessing.Queue()
    echo = multiprocessing.Process(target=_echo, args=(port_q, n))
    echo.start()
    s = socket.create_connection(("127.0.0.1", port_q.get(timeout=10)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req, buf, out = b"q" * 1024, bytearray(100), []
    for _ in range(n):
        time.sleep(0.001)  # let both sides sleep, as between W7's messages
        t0 = time.perf_counter()
        s.sendall(req)
        got = 0
        while got < 100:
            got += s.recv_into(memoryview(buf)[got:])
        out.append(time.perf_counter() - t0)
    s.close()
    echo.join()
    return out


def limit_fsync_concurrent(directory, k, n):
    """fdatasync latency when `k` files, one per thread, each append 1 KiB and fdatasync at
    the same moment (three brokers' logs on one disk): seconds per call."""
    import threading
    barrier = threading.Barrier(k)
    outs = [[] for _ in range(k)]

    def one(i):
        path = Path(directory) / f"fsync-{i}.tmp"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for _ in range(n):
                barrier.wait()
                os.write(fd, b"\1" * 1024)
                t0 = time.perf_counter()
                os.fdatasync(fd)
                outs[i].append(time.perf_counter() - t0)
        finally:
            os.close(fd)
            path.unlink()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for o in outs for x in o]


def limit_seq_write(directory, size):
    """Sequential write into a fresh file, 1 MiB writes, one fdatasync at the end: bytes/s."""
    path = Path(directory) / "seqwrite.tmp"
    buf = os.urandom(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0 = time.perf_counter()
        for _ in range(size >> 20):
            os.write(fd, buf)
        os.fdatasync(fd)
        dt = time.perf_counter() - t0
    finally:
        os.close(fd)
        path.unlink()
    return size / dt


def limit_fsync(directory, n):
    """fdatasync latency after each 4 KiB append: seconds per call."""
    path = Path(directory) / "fsync.tmp"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    out = []
    try:
        block = b"\1" * 4096
        for _ in range(n):
            os.write(fd, block)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            out.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return out


def machine_limits(cfg):
    Path(cfg.work).mkdir(parents=True, exist_ok=True)
    seq = [limit_seq_write(cfg.work, cfg.seq_bytes) for _ in range(3)]
    fs = limit_fsync(cfg.work, 500)
    tcp = [limit_loopback_tcp(2.0) for _ in range(3)]
    res = {
        "seq_write_fdatasync_MBps": {"median": statistics.median(seq) / 1e6,
                                     "min": min(seq) / 1e6, "max": max(seq) / 1e6},
        "fdatasync_ms": {"p50": pct(fs, 50) * 1e3, "p99": pct(fs, 99) * 1e3,
                         "max": max(fs) * 1e3},
        "loopback_tcp_MBps": {"median": statistics.median(tcp) / 1e6,
                              "min": min(tcp) / 1e6, "max": max(tcp) / 1e6},
        "cpus": os.cpu_count(),
    }
    log(f"limits: seq write {res['seq_write_fdatasync_MBps']['median']:.0f} MB/s, "
        f"fdatasync p50 {res['fdatasync_ms']['p50']:.3f} ms, "
        f"loopback TCP {res['loopback_tcp_MBps']['median']:.0f} MB/s")
    # The gigabytes just written and deleted keep the disk busy for a while (W1 measured
    # 2.2 M records/s right after them and 3.6 M once they settled).
    os.sync()
    time.sleep(10)
    return res


# --------------------------------------------------------------------------------------------
# Workloads. Each run function returns one run's measurements.


def throughput_run(cluster, produced_records, payload_bytes, seconds, clients_cpu):
    cpu, hwm = cluster.measure()
    gb = payload_bytes / 1e9
    return {
        "records_per_s": produced_records / seconds,
        "payload_MBps": payload_bytes / seconds / 1e6,
        "broker_cpu_s_per_GB": cpu / gb if gb else None,
        "broker_cpu_s": cpu,
        "client_cpu_s": clients_cpu,
        "seconds": seconds,
        "peak_broker_rss_MiB": hwm / (1 << 20),
        "cpu_busy_fraction": (cpu + clients_cpu) / (seconds * os.cpu_count()),
    }


def w_produce(cfg, n_brokers, acks, tag):
    """W1 (1 broker, RF 1), W2 (3 brokers, RF 3, acks=1), W3 (as W2, acks=all)."""
    rf = n_brokers
    c = new_cluster(cfg, n_brokers)
    n = scaled(cfg, cfg.w1_records)
    try:
        c.create_topic(tag, 6, rf, ["min.insync.replicas=2"] if rf == 3 else [])
        c.mark()
        p = perf_produce(cfg, c.bootstrap, tag, n, 100, acks, {"linger.ms": 5})
        out = p.wait(cfg.timeout)
        r = parse_produced(out)
        if r["failed"] or r["delivered"] != n:
            raise RuntimeError(f"{tag}: {r}")
        run = throughput_run(c, r["delivered"], r["bytes"], r["ms"] / 1000, p.cpu)
    finally:
        c.stop()
    return run


def w1(cfg):
    return w_produce(cfg, 1, 1, "w1")


def w2(cfg):
    return w_produce(cfg, 3, 1, "w2")


def w3(cfg):
    return w_produce(cfg, 3, -1, "w3")


W4_CONFIGS = ["min.insync.replicas=2"]


def w4(cfg):
    """100 partitions, 1 KiB, RF 3, min.insync 2, acks=all, linger 1 ms, 2 producers, 1 consumer."""
    c = new_cluster(cfg, 3)
    try:
        c.create_topic("w4", 100, 3, W4_CONFIGS)
        c.mark()
        n = scaled(cfg, cfg.w4_records)
        cons = perf_consume(cfg, c.bootstrap, "w4", 100, 2 * n)
        prods = [perf_produce(cfg, c.bootstrap, "w4", n, 1024, -1, {"linger.ms": 1})
                 for _ in range(2)]
        outs = [parse_produced(p.wait(cfg.timeout)) for p in prods]
        cons_out = parse_consumed(cons.wait(cfg.timeout))
        delivered = sum(o["delivered"] for o in outs)
        if any(o["failed"] for o in outs) or delivered != 2 * n:
            raise RuntimeError(f"w4: {outs}")
        seconds = max(o["ms"] for o in outs) / 1000
        run = throughput_run(c, delivered, sum(o["bytes"] for o in outs), seconds,
                             sum(p.cpu for p in prods) + cons.cpu)
        run["consumed_records_per_s"] = cons_out["received"] / (cons_out["ms"] / 1000)
    finally:
        c.stop()
    return run


def latency_run(cfg, tag, rate_total, seconds, size, partitions, extra_broker_args=(),
                producers=2, linger_ms=1, brokers=3, configs=W4_CONFIGS, keys=0):
    """Producers at a fixed total rate plus one consumer, all measuring latency (`keys` > 0:
    keyed records over that many keys, for compacted topics)."""
    c = new_cluster(cfg, brokers, extra_broker_args)
    log_bytes = None
    try:
        c.create_topic(tag, partitions, brokers, configs)
        expect = int(rate_total / producers * seconds) * producers
        lat_file = c.root / "e2e-latency.txt"
        args = [cfg.rdkafka_performance, "-C", "-t", tag, "-b", c.bootstrap, "-o", "beginning",
                "-c", expect, "-l", "-A", lat_file, "-X", "fetch.wait.max.ms=500"]
        for p in range(partitions):
            args += ["-p", p]
        cons = Client(args)
        time.sleep(2.0)  # the consumer's fetchers are running before the first record
        c.mark()
        pub_files = [c.root / f"publish-latency-{i}.txt" for i in range(producers)]
        prods = [Client([cfg.rate_producer, c.bootstrap, tag, rate_total / producers, seconds,
                         size, f, "acks=all", f"linger.ms={linger_ms}",
                         "enable.idempotence=false", f"bench.keys={keys}"])
                 for f in pub_files]
        pouts = []
        for p, f in zip(prods, pub_files):
            out = p.wait(seconds + 120)
            m = re.search(r"sent=(\d+) acked=(\d+) failed=(\d+) unflushed=(\d+) "
                          r"seconds=([\d.]+)", out)
            if not m:
                raise RuntimeError(f"{tag}: no rate_producer summary:\n{out[-2000:]}")
            pouts.append({"sent": int(m[1]), "acked": int(m[2]), "failed": int(m[3]),
                          "seconds": float(m[5]),
                          "latency_us": [int(x) for x in f.read_text().split()]})
        cout = parse_consumed(cons.wait(180))
        e2e = [int(x) for x in lat_file.read_text().split()]
        cpu, hwm = c.measure()
        if cfg.system == "skein":
            log_bytes = sum(f.stat().st_size for f in c.root.glob(f"d*/{tag}-*/*.log"))
    finally:
        c.stop()
    publish = [x for o in pouts for x in o["latency_us"]]
    acked = sum(o["acked"] for o in pouts)
    wall = max(o["seconds"] for o in pouts)
    if any(o["failed"] for o in pouts) or cout["received"] < expect:
        raise RuntimeError(f"{tag}: producers {[(o['sent'], o['acked'], o['failed']) for o in pouts]}"
                           f", consumer received {cout['received']} of {expect}")
    return {
        "records_per_s": acked / wall,
        "payload_MBps": acked * size / wall / 1e6,
        "broker_cpu_s_per_GB": cpu / (acked * size / 1e9),
        "broker_cpu_s": cpu,
        "client_cpu_s": sum(p.cpu for p in prods) + cons.cpu,
        "seconds": wall,
        "peak_broker_rss_MiB": hwm / (1 << 20),
        "cpu_busy_fraction": (cpu + sum(p.cpu for p in prods) + cons.cpu) / (wall * os.cpu_count()),
        "publish_latency": latency_summary(publish),
        "e2e_latency": latency_summary(e2e),
        **({"log_MB_at_end": log_bytes / 1e6} if log_bytes is not None else {}),
    }


# WC: a compacted topic written at a fixed rate over 10,000 keys, with small segments so the
# cleaner has work all along; WC0 is the same with the cleaner off. The cleaner is throttled as
# an operator would run it beside producers. Issue 20's target: WC's produce p99 within +10% of
# WC0's (skein only: the point is the cleaner's cost, not a comparison with Kafka).
WC_CONFIGS = ["cleanup.policy=compact", "segment.bytes=8388608", "min.cleanable.dirty.ratio=0.1"]
WC_CLEANER = ["--log-cleaner-io-max-bytes-per-second", "30000000",
              "--log-cleaner-backoff-ms", "500"]


def wc(cfg, cleaner=True):
    args = WC_CLEANER if cleaner else ["--log-cleaner-enable", "false"]
    return latency_run(cfg, "wc", 10_000, cfg.w5_seconds, 1024, 1, args, producers=1,
                       brokers=1, configs=WC_CONFIGS, keys=10_000)


def w5(cfg, w4_rate, fraction=0.5):
    return latency_run(cfg, "w5", w4_rate * fraction, cfg.w5_seconds, 1024, 100)


def w7(cfg):
    """One message in flight: 100 msg/s (each takes far less than the 10 ms between them)."""
    return latency_run(cfg, "w7", 100, cfg.w7_seconds, 1024, 1, producers=1, linger_ms=0)


def w7_interval(cfg):
    return latency_run(cfg, "w7i", 100, cfg.w7_seconds, 1024, 1, ["--flush-ms", "1000"],
                       producers=1, linger_ms=0)


class Backlog:
    """W6's backlog: written once, read by every W6 run."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.cluster = new_cluster(cfg, 1)
        self.cluster.create_topic("w6", 6, 1)
        self.records = cfg.w6_bytes // 100
        p = perf_produce(cfg, self.cluster.bootstrap, "w6", self.records, 100, 1,
                         {"linger.ms": 5})
        r = parse_produced(p.wait(cfg.timeout))
        if r["delivered"] != self.records:
            raise RuntimeError(f"w6 backlog: {r}")
        log(f"w6 backlog: {self.records} records written")
        # Each partition's end offset, so two consumers can split the partitions exactly.
        code = ("import sys,json; from confluent_kafka import Consumer, TopicPartition as T;"
                "c=Consumer({'bootstrap.servers':sys.argv[1],'group.id':'skein-bench'});"
                "print(json.dumps([c.get_watermark_offsets(T('w6',p),timeout=10)[1] "
                "for p in range(6)]))")
        out = subprocess.run([cfg.python, "-c", code, self.cluster.bootstrap],
                             capture_output=True, text=True, check=True, timeout=60)
        self.ends = json.loads(out.stdout)
        self.groups = 0


def w6(cfg, backlog):
    c = backlog.cluster
    c.mark()
    cons = perf_consume(cfg, c.bootstrap, "w6", 6, backlog.records)
    r = parse_consumed(cons.wait(cfg.timeout))
    if r["received"] != backlog.records:
        raise RuntimeError(f"w6: {r}")
    return throughput_run(c, r["received"], r["bytes"], r["ms"] / 1000, cons.cpu)


def w6_two(cfg, backlog):
    """W6 read by two consumer processes, three partitions each (a two-member group's split)."""
    c = backlog.cluster
    c.mark()
    halves = [[0, 1, 2], [3, 4, 5]]
    cons = []
    for parts in halves:
        args = [cfg.rdkafka_performance, "-C", "-t", "w6", "-b", c.bootstrap, "-o", "beginning",
                "-c", sum(backlog.ends[p] for p in parts), "-X", "fetch.wait.max.ms=100"]
        for p in parts:
            args += ["-p", p]
        cons.append(Client(args))
    t0 = time.monotonic()
    outs = [parse_consumed(x.wait(cfg.timeout)) for x in cons]
    wall = time.monotonic() - t0
    got = sum(o["received"] for o in outs)
    if got != backlog.records:
        raise RuntimeError(f"w6x2: {outs}")
    # Both start together; the slower one's own clock ends the read.
    seconds = max(o["ms"] for o in outs) / 1000
    run = throughput_run(c, got, sum(o["bytes"] for o in outs), seconds,
                         sum(x.cpu for x in cons))
    run["wall_s_including_client_start"] = wall
    return run


def flood(cfg):
    """Produce flood: 3 acks=0 producers as fast as they go; broker RSS sampled every 0.5 s."""
    c = new_cluster(cfg, 1)
    samples = []
    try:
        c.create_topic("flood", 6, 1)
        c.mark()
        n = cfg.flood_records
        prods = [perf_produce(cfg, c.bootstrap, "flood", n, 100, 0, {"linger.ms": 5})
                 for _ in range(3)]
        t0 = time.monotonic()
        while any(p.running() for p in prods) and time.monotonic() - t0 < cfg.timeout:
            samples.append((round(time.monotonic() - t0, 2),
                            round(c.brokers[0].status_kib("VmRSS") / 1024, 1)))
            time.sleep(0.5)
        outs = [parse_produced(p.wait(cfg.timeout)) for p in prods]
        seconds = max(o["ms"] for o in outs) / 1000
        sent = sum(o["sent"] for o in outs)
        run = throughput_run(c, sent, sent * 100, seconds, sum(p.cpu for p in prods))
    finally:
        c.stop()
    half = len(samples) // 2
    run["rss_MiB_samples"] = samples
    run["rss_first_half_max_MiB"] = max((s[1] for s in samples[:half]), default=None)
    run["rss_second_half_max_MiB"] = max((s[1] for s in samples[half:]), default=None)
    return run


def j_produce(cfg, n_brokers, acks, tag):
    """J1 / J3: W1 / W3 produced by kafka-producer-perf-test (the Java client) instead."""
    rf = n_brokers
    c = new_cluster(cfg, n_brokers)
    n = scaled(cfg, cfg.j_records)
    try:
        c.create_topic(tag, 6, rf, ["min.insync.replicas=2"] if rf == 3 else [])
        c.mark()
        p = Client(java_perf.producer_args(cfg.kafka_sh, c.bootstrap, tag, n, 100, acks,
                                           {"linger.ms": 5}))
        r = java_perf.parse_produced(p.wait(cfg.timeout))
        if r["sent"] != n:
            raise RuntimeError(f"{tag}: {r}")
        seconds = n / r["records_per_s"]
        run = throughput_run(c, n, n * 100, seconds, p.cpu)
        run["publish_latency"] = r["latency_ms"]
    finally:
        c.stop()
    return run


def j1(cfg):
    return j_produce(cfg, 1, 1, "j1")


def j3(cfg):
    return j_produce(cfg, 3, "all", "j3")


def j6(cfg, backlog):
    """J6: W6's backlog read by kafka-consumer-perf-test (one group member, all 6 partitions)."""
    c = backlog.cluster
    backlog.groups += 1
    c.mark()
    cons = Client(java_perf.consumer_args(cfg.kafka_sh, c.bootstrap, "w6", backlog.records,
                                          f"bench-j6-{backlog.groups}"))
    r = java_perf.parse_consumed(cons.wait(cfg.timeout))
    if r["received"] < backlog.records:
        raise RuntimeError(f"j6: {r}")
    run = throughput_run(c, r["received"], r["bytes"], r["ms"] / 1000, cons.cpu)
    run["rebalance_ms"] = r["rebalance_ms"]
    return run


TITLES = {
    "W1": "1 broker, RF 1, acks=1, 6 partitions, 100 B",
    "W2": "3 brokers, RF 3, acks=1, 6 partitions, 100 B",
    "W3": "3 brokers, RF 3, acks=all, 6 partitions, 100 B",
    "W4": "RF 3, acks=all, 100 partitions, 1 KiB, 2 producers + 1 consumer, max rate",
    "W5": "W4 at half W4's rate",
    "W5q": "W4 at a quarter of W4's rate",
    "W6": "consume a 2 GiB backlog (100 B records) from the beginning",
    "W6x2": "W6 read by two consumer processes, 3 partitions each",
    "W7": "one message in flight, 1 KiB, RF 3, acks=all (fsync before ack)",
    "W7i": "W7 with the interval flush policy (--flush-ms 1000)",
    "WC": "compacted topic, 10k msg/s of 1 KiB over 10,000 keys, 1 broker, throttled cleaner",
    "WC0": "WC with the cleaner off",
    "flood": "3 producers, acks=0, as fast as they go (RSS must stay bounded)",
    "J1": "W1 produced by kafka-producer-perf-test (Java client)",
    "J3": "W3 produced by kafka-producer-perf-test (Java client, idempotent)",
    "J6": "W6's backlog read by kafka-consumer-perf-test (Java client, one group member)",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skein", required=True)
    ap.add_argument("--rdkafka-performance", required=True)
    ap.add_argument("--rate-producer", default=None,
                    help="bench/rate_producer.c built (default: beside rdkafka_performance)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W6")
    ap.add_argument("--quick", action="store_true", help="small counts: checks the harness")
    ap.add_argument("--work", default=None, help="scratch directory for broker data")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--broker-arg", action="append",
                    help="extra flag for every broker, e.g. --broker-arg=--page-cache-window-bytes=0")
    ap.add_argument("--no-kafka", action="store_true",
                    help="skein only: no Apache Kafka runs and no ratio table")
    ap.add_argument("--kafka-sh", default=str(HERE.parent / "ci" / "kafka.sh"))
    ap.add_argument("--flush-divisor", type=int, default=10,
                    help="Kafka with flush.messages=1 sends this many times fewer records")
    cfg = ap.parse_args()
    repo = HERE.parent
    cfg.system = "skein"
    cfg.rate_producer = cfg.rate_producer or str(
        Path(cfg.rdkafka_performance).parent / "rate_producer")
    cfg.work = cfg.work or str(repo / "target" / "bench-work")
    quick = cfg.quick
    cfg.w1_records = 500_000 if quick else 10_000_000
    cfg.w4_records = 50_000 if quick else 500_000
    # The Java producer is slower than librdkafka: J1/J3 send a fifth of W1's records.
    cfg.j_records = 500_000 if quick else 2_000_000
    cfg.w5_seconds = 5 if quick else 20
    cfg.w7_seconds = 5 if quick else 20
    cfg.w6_bytes = (200 << 20) if quick else (2 << 30)
    cfg.flood_records = 1_000_000 if quick else 10_000_000
    cfg.seq_bytes = (256 << 20) if quick else (1 << 30)
    only = {x.strip() for x in cfg.only.split(",") if x.strip()}
    want = lambda k: not only or k in only  # noqa: E731

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    result = {"started": started, "git": rev, "quick": quick, "runs": cfg.runs,
              "broker_args": cfg.broker_arg or [],
              "machine": machine_limits(cfg), "workloads": {}}
    if not cfg.no_kafka:
        result["kafka"] = {"version": subprocess.run(
            [cfg.kafka_sh, "version"], capture_output=True, text=True).stdout.strip(),
            "heap_per_broker": KAFKA_HEAP, "flush_divisor": cfg.flush_divisor}
        subprocess.run([cfg.kafka_sh, "resolve"], check=True)

    def record(name, runs, system):
        summary = aggregate(runs)
        entry = {"title": TITLES[name], "runs": runs, "summary": summary}
        b = binding(name, summary, result["machine"])
        if b:
            entry["binding"] = b
        if system == "skein":
            result["workloads"][name] = entry
        else:
            result.setdefault("kafka_runs", {}).setdefault(system, {})[name] = entry
        s = summary.get("records_per_s")
        log(f"{name} [{system}]: " + (
            f"{s['median'] / 1e6:.3f} M records/s (min {s['min'] / 1e6:.3f}, "
            f"max {s['max'] / 1e6:.3f})" if s else "done"))

    def systems(name):
        if cfg.no_kafka or name in ("WC", "WC0"):
            return ["skein"]
        return ["skein", "kafka"] + (["kafka-flush"] if name in FSYNC_WORKLOADS else [])

    def repeat(name, fn, args=lambda system: ()):
        """`cfg.runs` runs of each system, alternating: skein, Kafka, (Kafka flushing), skein..."""
        runs = {sy: [] for sy in systems(name)}
        for i in range(cfg.runs):
            for sy in runs:
                log(f"{name} [{sy}] run {i + 1}/{cfg.runs}")
                cfg.system = sy
                try:
                    runs[sy].append(fn(cfg, *args(sy)))
                except Exception as e:  # one failed run must not lose the others' results
                    log(f"{name} [{sy}] run {i + 1} FAILED: {e}")
                    result.setdefault("failures", []).append(f"{name} [{sy}] run {i + 1}: {e}")
                finally:
                    cfg.system = "skein"
        for sy, rs in runs.items():
            if rs:
                record(name, rs, sy)

    def summary_of(name, system):
        if system == "skein":
            return result["workloads"].get(name, {}).get("summary")
        return result.get("kafka_runs", {}).get(system, {}).get(name, {}).get("summary")

    if want("W1"):
        repeat("W1", w1)
    if want("W2"):
        repeat("W2", w2)
    if want("W3"):
        repeat("W3", w3)
    if want("W4") or want("W5"):
        repeat("W4", w4)
    if want("W5") and "W4" in result["workloads"]:
        # Each system at half of its own W4 rate.
        def w5_rate(sy):
            s = summary_of("W4", sy)
            if not s:
                raise RuntimeError(f"no W4 rate for {sy}")
            return (s["records_per_s"]["median"],)
        repeat("W5", w5, w5_rate)
    if want("W6") or want("J6"):
        # One backlog per system, all written first, so the runs can alternate.
        backlogs = {}
        try:
            for sy in systems("W6"):
                cfg.system = sy
                backlogs[sy] = Backlog(cfg)  # the run stops here if a backlog cannot be written
            cfg.system = "skein"
            if want("W6"):
                repeat("W6", w6, lambda sy: (backlogs[sy],))
                repeat("W6x2", w6_two, lambda sy: (backlogs[sy],))
            if want("J6"):
                repeat("J6", j6, lambda sy: (backlogs[sy],))
        finally:
            cfg.system = "skein"
            for b in backlogs.values():
                b.cluster.stop()
    if want("W7"):
        # fdatasync's cost drifts with the disk's background writeback: measure it again
        # right before the workload whose target is stated in fdatasyncs.
        os.sync()
        fs = limit_fsync(cfg.work, 500)
        result["machine"]["fdatasync_before_W7_ms"] = {
            "p50": pct(fs, 50) * 1e3, "p99": pct(fs, 99) * 1e3, "max": max(fs) * 1e3}
        # What W7's serial path pays at the least: its fsyncs run on three brokers sharing
        # one disk, and it makes two round trips between processes.
        fs3 = limit_fsync_concurrent(cfg.work, 3, 300)
        rtt = limit_loopback_rtt(1000)
        result["machine"]["fdatasync_3_concurrent_ms"] = {
            "p50": pct(fs3, 50) * 1e3, "p99": pct(fs3, 99) * 1e3, "max": max(fs3) * 1e3}
        result["machine"]["loopback_rtt_ms"] = {
            "p50": pct(rtt, 50) * 1e3, "p99": pct(rtt, 99) * 1e3, "max": max(rtt) * 1e3}
        log(f"before W7: fdatasync p50 {pct(fs, 50) * 1e3:.3f} ms, three at once "
            f"{pct(fs3, 50) * 1e3:.3f} ms, loopback round trip {pct(rtt, 50) * 1e3:.3f} ms")
        repeat("W7", w7)
        repeat("W7i", w7_interval)
    if want("WC"):
        repeat("WC", wc)
        repeat("WC0", lambda c: wc(c, cleaner=False))
        on, off = summary_of("WC", "skein"), summary_of("WC0", "skein")
        if on and off:
            ratio = on["publish_latency"]["p99_ms"]["median"] / off["publish_latency"]["p99_ms"]["median"]
            result["cleaner_produce_p99_ratio"] = ratio
            log(f"WC: produce p99 with the throttled cleaner / without: {ratio:.2f} "
                f"(target <= 1.10); log at the end {on['log_MB_at_end']['median']:.0f} MB "
                f"vs {off['log_MB_at_end']['median']:.0f} MB")
    if want("flood"):
        repeat("flood", flood)
    if want("J1"):
        repeat("J1", j1)
    if want("J3"):
        repeat("J3", j3)

    stamp = started.replace(":", "").replace("-", "")
    outdir = Path(cfg.out) / (("quick-" if quick else "") + stamp)
    outdir.mkdir(parents=True, exist_ok=True)
    if "kafka_runs" in result:
        result["kafka"]["workloads"] = result.pop("kafka_runs")
    side = compare_markdown({"workloads": result["workloads"],
                             "kafka": result.get("kafka", {}).get("workloads", {})})
    result["skein_to_kafka"] = compare_json({"workloads": result["workloads"],
                                             "kafka": result.get("kafka", {}).get("workloads", {})})
    (outdir / "results.json").write_text(json.dumps(result, indent=1))
    svg_plot(result, outdir / "results.svg")
    table = markdown(result)
    if side:
        kv = result["kafka"]
        table = (f"skein beside Apache Kafka {kv['version']} (heap {kv['heap_per_broker']} per "
                 f"broker), same machine, same load generators, alternating runs:\n\n{side}"
                 f"\n\nskein alone:\n\n{table}")
    (outdir / "results.md").write_text(table + "\n")
    if not quick:
        for ext in ("json", "svg", "md"):
            shutil.copy(outdir / f"results.{ext}", Path(cfg.out) / f"latest.{ext}")
    print(table)
    log(f"results in {outdir}")
    if result.get("failures"):
        log("FAILED runs:\n  " + "\n  ".join(result["failures"]))
        sys.exit(1)


if __name__ == "__main__":
    main()
