"""The benchmark's report: each workload's runs aggregated (median, min, max), the limit that
binds it, the SVG plot and the Markdown table of skein's own figures. The side-by-side ratios to
Apache Kafka are in compare.py."""

import statistics
from pathlib import Path


NUMERIC_KEYS = ["records_per_s", "payload_MBps", "broker_cpu_s_per_GB", "peak_broker_rss_MiB",
                "consumed_records_per_s", "cpu_busy_fraction", "log_MB_at_end"]


def aggregate(runs):
    agg = {}
    for k in NUMERIC_KEYS:
        xs = [r[k] for r in runs if r.get(k) is not None]
        if xs:
            agg[k] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}
    for lk in ("publish_latency", "e2e_latency"):
        if runs and lk in runs[0]:
            agg[lk] = {}
            for q in ("p50_ms", "p99_ms", "p99_9_ms", "max_ms"):
                xs = [r[lk][q] for r in runs if r[lk][q] is not None]
                if xs:
                    agg[lk][q] = {"median": statistics.median(xs), "min": min(xs),
                                  "max": max(xs)}
    return agg


# Bytes each payload byte costs the disk and loopback TCP in a workload.
AMPLIFICATION = {
    "W1": (1, 1), "W2": (3, 3), "W3": (3, 3), "W4": (3, 4), "W6": (0, 1), "W6x2": (0, 1), "flood": (1, 1),
    "W5": (3, 4), "W5q": (3, 4),
}


def binding(name, agg, limits):
    """The limit that binds a throughput workload, and the fraction of it reached."""
    if name not in AMPLIFICATION or "payload_MBps" not in agg:
        return None
    disk_x, tcp_x = AMPLIFICATION[name]
    disk = limits["seq_write_fdatasync_MBps"]["median"]
    tcp = limits["loopback_tcp_MBps"]["median"]
    cands = [("loopback TCP", tcp / tcp_x, tcp_x)]
    if disk_x:
        cands.append(("sequential write + fdatasync", disk / disk_x, disk_x))
    lim_name, lim, x = min(cands, key=lambda c: c[1])
    got = agg["payload_MBps"]["median"]
    return {"limit": lim_name, "payload_bytes_per_limit_byte": x,
            "limit_payload_MBps": lim, "fraction": got / lim}


def svg_plot(result, path):
    """Two panels: throughput (records/s, median with min-max bars) and latency p50/p99."""
    w = result["workloads"]
    tp = [(k, w[k]["summary"]["records_per_s"]) for k in ("W1", "W2", "W3", "W4", "W6", "W6x2", "flood")
          if k in w and "records_per_s" in w[k]["summary"]]
    lat = []
    # W5's latencies (seconds, from an overloaded machine) would flatten W7's to nothing.
    for k, lk in (("W7", "publish_latency"), ("W7", "e2e_latency"),
                  ("W7i", "publish_latency"), ("W7i", "e2e_latency")):
        if k in w and lk in w[k]["summary"]:
            lat.append((f"{k} {lk.split('_')[0]}", w[k]["summary"][lk]))
    W, H = 900, 420
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="10" y="18" font-size="14">skein benchmark {result["started"]} '
           f'({result["machine"]["cpus"]} CPUs, brokers and clients on one machine)</text>']

    def panel(x0, title, items, unit, scale, targets):
        pw, ph, top = 400, 300, 60
        out.append(f'<text x="{x0}" y="{top - 15}" font-size="13">{title}</text>')
        vmax = max([v["max"] for _, v in items] + [t for _, t in targets] + [1e-9]) * 1.1
        out.append(f'<line x1="{x0}" y1="{top + ph}" x2="{x0 + pw}" y2="{top + ph}" stroke="black"/>')
        out.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{top + ph}" stroke="black"/>')
        for i in range(5):
            v = vmax * i / 4
            y = top + ph - ph * i / 4
            out.append(f'<text x="{x0 - 4}" y="{y + 4}" text-anchor="end">{v / scale:.3g}</text>')
        bw = pw / max(len(items), 1)
        for i, (name, v) in enumerate(items):
            x = x0 + i * bw + bw * 0.2
            h = ph * v["median"] / vmax
            out.append(f'<rect x="{x:.1f}" y="{top + ph - h:.1f}" width="{bw * 0.6:.1f}" '
                       f'height="{h:.1f}" fill="#4a7bb7"/>')
            cx = x + bw * 0.3
            y1, y2 = top + ph - ph * v["min"] / vmax, top + ph - ph * v["max"] / vmax
            out.append(f'<line x1="{cx:.1f}" y1="{y1:.1f}" x2="{cx:.1f}" y2="{y2:.1f}" stroke="black"/>')
            out.append(f'<text x="{cx:.1f}" y="{top + ph + 12}" text-anchor="end" font-size="10" '
                       f'transform="rotate(-35 {cx:.1f} {top + ph + 12})">{name}</text>')
            out.append(f'<text x="{cx:.1f}" y="{top + ph - h - 4:.1f}" text-anchor="middle" '
                       f'font-size="10">{v["median"] / scale:.3g}</text>')
        for label, t in targets:
            y = top + ph - ph * t / vmax
            out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" '
                       'stroke="#c0392b" stroke-dasharray="4,3"/>')
            out.append(f'<text x="{x0 + pw}" y="{y - 3:.1f}" text-anchor="end" fill="#c0392b" '
                       f'font-size="10">{label}</text>')
        out.append(f'<text x="{x0}" y="{top + ph + 55}" font-size="11">{unit}</text>')

    panel(60, "Throughput (median, bars: min-max of runs)", tp, "million records/s", 1e6,
          [("W1 target 2.5M", 2.5e6), ("W6 target 4M", 4e6)])
    lat_items = []
    for name, s in lat:
        lat_items.append((name + " p50", s["p50_ms"]))
        lat_items.append((name + " p99", s["p99_ms"]))
    # Latency labels are long: shorten.
    lat_items = [(n.replace(" publish", " pub").replace(" e2e", ""), v) for n, v in lat_items]
    panel(520, "Latency, one record in flight (ms)", lat_items, "ms", 1, [])
    out.append("</svg>")
    Path(path).write_text("\n".join(out))


def fmt(v, scale=1, nd=2):
    if v is None:
        return "-"
    return f"{v['median'] / scale:.{nd}f} ({v['min'] / scale:.{nd}f}–{v['max'] / scale:.{nd}f})"


def markdown(result):
    w = result["workloads"]
    lim = result["machine"]
    lines = [
        "| workload | records/s (M) | payload MB/s | broker CPU s/GB | peak RSS MiB | latency | fraction of the disk/TCP limit; CPU busy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k, v in w.items():
        s = v["summary"]
        latency = []
        for lk, short in (("publish_latency", "publish"), ("e2e_latency", "e2e")):
            if lk in s:
                q = s[lk]
                latency.append(
                    f"{short} p50 {q['p50_ms']['median']:.2f} / p99 {q['p99_ms']['median']:.2f}"
                    f" / p99.9 {q['p99_9_ms']['median']:.2f} / max {q['max_ms']['median']:.2f} ms")
        b = v.get("binding")
        bind = f"{b['limit']}: {b['fraction']:.0%}" if b else "-"
        fs = lim.get("fdatasync_before_W7_ms", lim["fdatasync_ms"])["p50"]
        if k.startswith("W7") and "e2e_latency" in s:
            e2e = s['e2e_latency']['p50_ms']['median']
            bind = f"e2e p50 = {e2e / fs:.1f} fdatasyncs ({fs:.3f} ms)"
            if "loopback_rtt_ms" in lim:
                fsyncs = k == "W7"
                floor = w7_floor_ms(lim, fsyncs)
                what = "2 round trips" + (" + 3 fdatasyncs at once" if fsyncs else "")
                bind += f"; floor ({what}) {floor:.2f} ms: {e2e / floor:.1f}x"
        if "cpu_busy_fraction" in s:
            # Brokers and clients share the machine's CPUs: the other limit that can bind.
            bind += f"; CPUs busy (brokers + clients): {s['cpu_busy_fraction']['median']:.0%}"
        lines.append(
            f"| {k} {v['title']} | {fmt(s.get('records_per_s'), 1e6)} | "
            f"{fmt(s.get('payload_MBps'), 1, 0)} | {fmt(s.get('broker_cpu_s_per_GB'), 1, 1)} | "
            f"{fmt(s.get('peak_broker_rss_MiB'), 1, 0)} | {'<br>'.join(latency) or '-'} | {bind} |")
    lines.append("")
    lines.append(
        f"Machine limits: sequential write with fdatasync {lim['seq_write_fdatasync_MBps']['median']:.0f} MB/s, "
        f"fdatasync p50 {lim['fdatasync_ms']['p50']:.3f} ms (p99 {lim['fdatasync_ms']['p99']:.3f} ms), "
        f"loopback TCP {lim['loopback_tcp_MBps']['median']:.0f} MB/s, {lim['cpus']} CPUs.")
    if "fdatasync_before_W7_ms" in lim:
        f = lim["fdatasync_before_W7_ms"]
        lines.append(f"fdatasync measured again just before W7: p50 {f['p50']:.3f} ms, "
                     f"p99 {f['p99']:.3f} ms.")
    if "loopback_rtt_ms" in lim:
        lines.append(
            f"Three fdatasyncs at once (three brokers, one disk): p50 "
            f"{lim['fdatasync_3_concurrent_ms']['p50']:.3f} ms; loopback round trip between two "
            f"processes: p50 {lim['loopback_rtt_ms']['p50']:.3f} ms. W7's floor is two round "
            f"trips plus the follower fsync overlapping the leader's: "
            f"{w7_floor_ms(lim):.2f} ms.")
    return "\n".join(lines)


def w7_floor_ms(lim, fsyncs=True):
    """Least W7 can take on this machine: producer to leader to follower and back (two round
    trips) around one fsync that overlaps the other brokers' (three on one disk); W7i has no
    fsync on its path."""
    rtts = 2 * lim["loopback_rtt_ms"]["p50"]
    return rtts + (lim["fdatasync_3_concurrent_ms"]["p50"] if fsyncs else 0)


