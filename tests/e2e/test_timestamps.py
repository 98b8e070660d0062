"""Batch timestamps a client got wrong: a raw producer (no client library) sends RecordBatch v2
bytes whose header max timestamp is -1 (as sarama before 1.23 sends it), too old or too new.

Kafka behaviour asserted here:
- The broker judges a batch by its records' timestamps: the stored header carries their max, so
  time retention (retention.ms of an hour, checked every 300 ms) deletes none of these fresh
  records, and ListOffsets by timestamp finds the first record at or after the time asked.
- Compressed (gzip) batches are judged the same way.
- message.timestamp.after.max.ms (default one hour) and message.timestamp.before.max.ms refuse
  records outside them with INVALID_TIMESTAMP (32); records without a timestamp (-1) pass.
- A data directory written before the broker checked timestamps (headers of -1 on disk, time
  indexes built from them) heals at the next start: nothing is deleted early.
"""

import gzip
import os
import socket
import struct
import time

from confluent_kafka import TopicPartition

from helpers import consume_exact, consumer, unique_topic
from storage import partition_dir, stored_batches
from test_topic_configs import create_topic, watermarks

RETENTION_ARGS = ["--log-retention-check-interval-ms", "300"]
INVALID_TIMESTAMP = 32

# --- CRC-32C and the RecordBatch v2 encoding, by hand -------------------------------------------

_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varlong(v):
    z = (v << 1) ^ (v >> 63)
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def record(offset_delta, ts_delta, key, value):
    body = b"\x00" + varlong(ts_delta) + varlong(offset_delta)
    body += varlong(len(key)) + key + varlong(len(value)) + value + varlong(0)
    return varlong(len(body)) + body


def batch(stamps, values, header_max, codec=0):
    """One RecordBatch v2 of records with timestamps `stamps`; the header's max is `header_max`."""
    base_ts = stamps[0]
    recs = b"".join(
        record(i, ts - base_ts, str(i).encode(), v) for i, (ts, v) in enumerate(zip(stamps, values))
    )
    if codec == 1:
        recs = gzip.compress(recs)
    after_crc = struct.pack(
        ">hiqqqhii", codec, len(stamps) - 1, base_ts, header_max, -1, -1, -1, len(stamps)
    ) + recs
    crc = crc32c(after_crc)
    rest = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(rest)) + rest


def restamp_on_disk(path):
    """Rewrites every batch header in a segment file to max timestamp -1 with a valid CRC, as an
    older skein stored a client's -1."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        pos = 0
        while pos + 61 <= len(data):
            (length,) = struct.unpack_from(">i", data, pos + 8)
            struct.pack_into(">q", data, pos + 35, -1)
            struct.pack_into(">I", data, pos + 17, crc32c(bytes(data[pos + 21 : pos + 12 + length])))
            pos += 12 + length
        f.seek(0)
        f.write(data)


# --- Produce v3 over a raw socket ------------------------------------------------------------------


def enc_str(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "connection closed"
        out += chunk
    return out


def produce_raw(bootstrap, topic, batch_bytes, correlation_id=1):
    """Sends one batch with acks=-1 (Produce v3); returns (error_code, base_offset)."""
    host, port = bootstrap.split(":")
    body = struct.pack(">hhi", -1, -1, 10_000)  # no transactional id, acks=-1, timeout
    body += struct.pack(">i", 1) + enc_str(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", len(batch_bytes)) + batch_bytes
    req = struct.pack(">hhi", 0, 3, correlation_id) + enc_str("raw-producer") + body
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(struct.pack(">i", len(req)) + req)
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        resp = recv_exact(s, size)
    pos = 4  # correlation id
    (n_topics,) = struct.unpack_from(">i", resp, pos)
    assert n_topics == 1
    (name_len,) = struct.unpack_from(">h", resp, pos + 4)
    pos += 6 + name_len
    (n_parts,) = struct.unpack_from(">i", resp, pos)
    assert n_parts == 1
    _index, error, base_offset, _append_time = struct.unpack_from(">ihqq", resp, pos + 4)
    return error, base_offset


def offset_for_time(bootstrap, topic, ts):
    c = consumer(bootstrap)
    try:
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
        return tp.offset
    finally:
        c.close()


def produce_bad_headers(bootstrap, topic, now):
    """Eight batches of three records, timestamps now-5000+100*i...; headers -1, 0 or far ahead,
    some gzip; returns every record's (value, timestamp) in offset order."""
    sent = []
    headers = [-1, -1, 0, now + 3_000_000, -1, 0, -1, -1]
    for i, header_max in enumerate(headers):
        stamps = [now - 5000 + 100 * i + d for d in (0, 40, 20)]
        values = [f"b{i}r{j}".encode() * 10 for j in range(3)]
        err, base = produce_raw(bootstrap, topic, batch(stamps, values, header_max, codec=i % 2), i + 1)
        assert err == 0, f"batch {i} (header max {header_max}): error {err}"
        assert base == 3 * i
        sent += list(zip(values, stamps))
    return sent


def assert_all_there(bootstrap, topic, sent):
    lo, hi = watermarks(bootstrap, topic)
    assert (lo, hi) == (0, len(sent)), f"watermarks {(lo, hi)}: retention deleted fresh records"
    msgs = consume_exact(bootstrap, topic, 0, len(sent))
    assert [(m.value(), m.timestamp()[1]) for m in msgs] == sent


def test_unset_or_wrong_max_timestamp_survives_retention_and_is_found_by_time(broker_factory):
    b = broker_factory(extra_args=RETENTION_ARGS).start()
    topic = unique_topic("bad-max-ts")
    # Small segments: every batch seals its own segment, which retention may judge.
    create_topic(b.bootstrap, topic, {"retention.ms": "3600000", "segment.bytes": "300"})
    now = int(time.time() * 1000)
    sent = produce_bad_headers(b.bootstrap, topic, now)

    # The stored headers carry the records' max, whatever the client said.
    stored = stored_batches(b.data_dir, topic, 0)
    assert [s["max_timestamp"] for s in stored] == [now - 5000 + 100 * i + 40 for i in range(8)]
    assert [s["codec"] for s in stored] == ["none", "gzip"] * 4

    time.sleep(2.0)  # six retention passes
    assert_all_there(b.bootstrap, topic, sent)

    # ListOffsets by time: the first record at or after it, inside batches whose header said -1.
    assert offset_for_time(b.bootstrap, topic, now - 10_000) == 0
    assert offset_for_time(b.bootstrap, topic, now - 5000 + 100 * 4 + 1) == 13  # batch 4, record 1
    assert offset_for_time(b.bootstrap, topic, now - 5000 + 100 * 7 + 40) == 22
    assert offset_for_time(b.bootstrap, topic, now + 60_000) == -1


def test_timestamps_out_of_range_are_refused(broker_factory):
    b = broker_factory().start()
    topic = unique_topic("ts-range")
    create_topic(b.bootstrap, topic, {"message.timestamp.before.max.ms": "60000"})
    now = int(time.time() * 1000)
    v = [b"x"]
    assert produce_raw(b.bootstrap, topic, batch([now + 2 * 3_600_000], v, -1))[0] == INVALID_TIMESTAMP
    assert produce_raw(b.bootstrap, topic, batch([now - 120_000], v, -1))[0] == INVALID_TIMESTAMP
    err, base = produce_raw(b.bootstrap, topic, batch([-1, -1], [b"a", b"b"], -1))
    assert (err, base) == (0, 0), "records without a timestamp are not judged by the limits"
    err, base = produce_raw(b.bootstrap, topic, batch([now - 30_000, now + 60_000], [b"c", b"d"], now))
    assert (err, base) == (0, 2)
    assert watermarks(b.bootstrap, topic) == (0, 4)


def test_old_data_directory_heals(broker_factory):
    b = broker_factory(extra_args=RETENTION_ARGS).start()
    topic = unique_topic("heal")
    create_topic(b.bootstrap, topic, {"retention.ms": "3600000", "segment.bytes": "300"})
    now = int(time.time() * 1000)
    sent = produce_bad_headers(b.bootstrap, topic, now)
    assert b.stop() == 0

    # Make the directory look written by an older skein: headers say -1, indexes built from them.
    d = partition_dir(b.data_dir, topic, 0)
    os.remove(os.path.join(d, "timestamps-checked"))
    for name in os.listdir(d):
        if name.endswith(".log"):
            restamp_on_disk(os.path.join(d, name))
        if name.endswith(".timeindex"):
            with open(os.path.join(d, name), "r+b") as f:
                data = bytearray(f.read())
                for at in range(0, len(data), 12):
                    struct.pack_into(">q", data, at, -1)
                f.seek(0)
                f.write(data)
    assert all(s["max_timestamp"] == -1 for s in stored_batches(b.data_dir, topic, 0))

    b.start()
    time.sleep(2.0)
    assert_all_there(b.bootstrap, topic, sent)
    assert offset_for_time(b.bootstrap, topic, now - 5000 + 100 * 4 + 1) == 13
    assert os.path.exists(os.path.join(d, "timestamps-checked"))
