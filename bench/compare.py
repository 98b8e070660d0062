"""skein beside Apache Kafka: each of skein's figures as a ratio to Kafka's, measured in the
same run with the same load generator.

Kafka runs as "kafka" (its defaults: acknowledged once in the page cache, fsync left to the OS)
for every workload, and as "kafka-flush" (topics with flush.messages=1: every append fsynced
before the ack) for the workloads where skein fsyncs before it acknowledges (acks=all without
an interval flush policy): that is the like-for-like durability comparison.
"""

# Workloads where skein fsyncs before the ack (acks=all, no --flush-ms): Kafka also runs with
# flush.messages=1 for them.
FSYNC_WORKLOADS = {"W3", "W4", "W5", "W7", "J3"}

DURABILITY = {
    "kafka": "defaults (no fsync before ack)",
    "kafka-flush": "flush.messages=1 (fsync before ack)",
}


def _median(summary, *path):
    v = summary
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v.get("median") if isinstance(v, dict) else None


def _latency_key(summary):
    for lk in ("e2e_latency", "publish_latency"):
        if lk in summary:
            return lk
    return None


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def compare_json(result):
    """{workload: {kafka variant: {figure: {"skein", "kafka", "ratio"}}}} for every workload
    both measured."""
    out = {}
    skein = result["workloads"]
    for variant, workloads in result.get("kafka", {}).items():
        for name, entry in workloads.items():
            if name not in skein:
                continue
            s, k = skein[name]["summary"], entry["summary"]
            figures = {}
            for fig, path in (("records_per_s", ("records_per_s",)),
                              ("broker_cpu_s_per_GB", ("broker_cpu_s_per_GB",)),
                              ("peak_broker_rss_MiB", ("peak_broker_rss_MiB",))):
                a, b = _median(s, *path), _median(k, *path)
                figures[fig] = {"skein": a, "kafka": b, "ratio": _ratio(a, b)}
            lk = _latency_key(s)
            if lk and lk in k:
                for q in ("p50_ms", "p99_ms", "p99_9_ms"):
                    a, b = _median(s, lk, q), _median(k, lk, q)
                    figures[f"{lk}_{q}"] = {"skein": a, "kafka": b, "ratio": _ratio(a, b)}
            out.setdefault(name, {})[variant] = figures
    return out


def _cell(f, scale=1.0, unit="", nd=2):
    if not f or f["ratio"] is None:
        return "-"
    return (f"**{f['ratio']:.2f}** ({f['skein'] / scale:.{nd}f}{unit} / "
            f"{f['kafka'] / scale:.{nd}f}{unit})")


def compare_markdown(result):
    """The side-by-side table: one row per workload and Kafka variant."""
    cmp = compare_json(result)
    if not cmp:
        return ""
    lines = [
        "| workload | Kafka run as | throughput (M records/s) | latency p50 (ms) | "
        "latency p99 (ms) | broker CPU-s per GB | peak broker RSS (MiB) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in result["workloads"]:
        for variant in ("kafka", "kafka-flush"):
            f = cmp.get(name, {}).get(variant)
            if not f:
                continue
            lk = next((k[:-len("_p50_ms")] for k in f if k.endswith("_p50_ms")), None)
            lat = lambda q: _cell(f.get(f"{lk}_{q}")) if lk else "-"  # noqa: E731
            what = {"e2e_latency": "e2e ", "publish_latency": "publish "}.get(lk, "")
            lines.append(
                f"| {name} | {DURABILITY[variant]} | {_cell(f['records_per_s'], 1e6, '', 3)} | "
                f"{what}{lat('p50_ms')} | {what}{lat('p99_ms')} | "
                f"{_cell(f['broker_cpu_s_per_GB'], 1, '', 1)} | "
                f"{_cell(f['peak_broker_rss_MiB'], 1, '', 0)} |")
    lines += [
        "",
        "Each cell: **skein / Kafka** (skein's median / Kafka's median). Throughput above 1 means "
        "skein is faster; latency, CPU and RSS below 1 mean skein uses less. "
        "\"defaults\" is Kafka as shipped, which acknowledges before any fsync (as skein does "
        "for acks=0/1 and W7i); \"flush.messages=1\" makes Kafka fsync every append before the "
        "ack, as skein does for acks=all: the like-for-like rows for W3, W4, W5, W7 and J3.",
    ]
    return "\n".join(lines)
