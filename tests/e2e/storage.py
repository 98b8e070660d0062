"""Read the broker's on-disk log to check what it stored (the layout the issue fixes:
<data-dir>/<topic>-<partition>/<base offset>.log holding Kafka RecordBatch v2 bytes)."""

import glob
import os
import struct

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def partition_dir(data_dir, topic, partition):
    return os.path.join(data_dir, f"{topic}-{partition}")


def stored_batches(data_dir, topic, partition):
    """Parse every RecordBatch header in the partition's .log segments, in offset order.

    Returns a list of dicts: base_offset, last_offset_delta, magic, codec, count,
    timestamp_type, producer_id, max_timestamp. Stops at a segment's first incomplete batch."""
    d = partition_dir(data_dir, topic, partition)
    segs = sorted(glob.glob(os.path.join(d, "*.log")), key=lambda p: int(os.path.basename(p).split(".")[0]))
    out = []
    for seg in segs:
        with open(seg, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 61 <= len(data):
            base_offset, batch_len = struct.unpack_from(">qi", data, pos)
            if batch_len <= 0 or pos + 12 + batch_len > len(data):
                break
            (_leader_epoch, magic, _crc, attrs, last_delta, _first_ts, max_ts, pid, _epoch, _seq, count) = (
                struct.unpack_from(">ibIhiqqqhii", data, pos + 12)
            )
            out.append(
                {
                    "base_offset": base_offset,
                    "last_offset_delta": last_delta,
                    "magic": magic,
                    "codec": CODECS.get(attrs & 0x7, f"unknown({attrs & 7})"),
                    "timestamp_type": "log_append" if attrs & 0x8 else "create",
                    "count": count,
                    "producer_id": pid,
                    "max_timestamp": max_ts,
                }
            )
            pos += 12 + batch_len
    return out
