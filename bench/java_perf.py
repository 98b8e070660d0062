"""The second load generator: Apache Kafka's own kafka-producer-perf-test and
kafka-consumer-perf-test (the Java client, kafka-clients of the Kafka version ci/kafka.sh pins),
run through `ci/kafka.sh tool` with the JVM settings of Kafka's scripts (512 MB heap, G1).

Only the command lines and the parsing of the tools' summaries live here; the workloads that use
them (J1, J3, J6) are in bench.py beside the librdkafka ones.
"""

import re

# "300000 records sent, 20008.0 records/sec (1.91 MB/sec), 7329.80 ms avg latency,
#  12142.00 ms max latency, 7498 ms 50th, 11404 ms 95th, 11795 ms 99th, 12092 ms 99.9th."
PRODUCED = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def producer_args(kafka_sh, bootstrap, topic, count, size, acks, props):
    """kafka-producer-perf-test at full speed (--throughput -1)."""
    args = [kafka_sh, "tool", "kafka-producer-perf-test", "--topic", topic,
            "--num-records", count, "--record-size", size, "--throughput", -1,
            "--producer-props", f"bootstrap.servers={bootstrap}", f"acks={acks}"]
    args += [f"{k}={v}" for k, v in props.items()]
    return args


def parse_produced(out):
    """The tool's final summary line: records, rate, and its send-to-ack latency percentiles."""
    m = PRODUCED.findall(out)
    if not m:
        raise RuntimeError(f"no kafka-producer-perf-test summary in output:\n{out[-2000:]}")
    sent, rate, mbps, _avg, mx, p50, _p95, p99, p999 = m[-1]
    if re.search(r"^(Exception|org\.apache\.kafka\.common\.errors)", out, re.M):
        raise RuntimeError(f"kafka-producer-perf-test saw errors:\n{out[-2000:]}")
    return {"sent": int(sent), "records_per_s": float(rate), "MBps": float(mbps),
            "latency_ms": {"p50_ms": float(p50), "p99_ms": float(p99),
                           "p99_9_ms": float(p999), "max_ms": float(mx)}}


def consumer_args(kafka_sh, bootstrap, topic, count, group):
    """kafka-consumer-perf-test: one consumer in a group, from the beginning, `count` records."""
    return [kafka_sh, "tool", "kafka-consumer-perf-test", "--bootstrap-server", bootstrap,
            "--topic", topic, "--num-records", count, "--group", group, "--timeout", 60000]


def parse_consumed(out):
    """The tool's CSV summary: records and bytes read, and the fetch time (the group's
    rebalance before the first fetch left out, as the tool itself reports it)."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("start.time") and i + 1 < len(lines):
            head = [h.strip() for h in line.split(",")]
            row = dict(zip(head, (v.strip() for v in lines[i + 1].split(","))))
            return {"received": int(row["data.consumed.in.nMsg"]),
                    "bytes": round(float(row["data.consumed.in.MB"]) * (1 << 20)),
                    "ms": int(row["fetch.time.ms"]),
                    "rebalance_ms": int(row["rebalance.time.ms"])}
    raise RuntimeError(f"no kafka-consumer-perf-test summary in output:\n{out[-2000:]}")
