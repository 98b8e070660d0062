"""Garbage on the wire: raw sockets throwing malformed frames at a running broker.

Kafka behaviour asserted here:
- A frame whose size is negative or above socket.request.max.bytes (100 MiB), e.g.
  2^31-1, makes the broker close that connection at once, without reading (or
  allocating) the announced size.
- A complete frame with an unknown API key, a header that does not parse, or a body
  that does not parse gets the protocol's error or a closed connection for that
  client alone, never a hang.
- KIP-511: ApiVersions at a version above the broker's answers with a v0-format
  response carrying UNSUPPORTED_VERSION (35) and the broker's API ranges.
- Produce v0-v2: ApiVersions lists Produce from v0 (as Kafka 4.0 does since KAFKA-18659, so that
  librdkafka <= 2.11 compresses), but a request at v0-v2 stores nothing: with acks=1 it gets
  UNSUPPORTED_VERSION (35) for every partition in that version's response format and the
  connection stays usable; with acks=0 (no answer expected) the connection is closed.
- Random bytes and truncated frames followed by the client's EOF: the broker closes
  the connection; it never hangs or dies.
- Meanwhile and afterwards, normal clients keep working and the process is alive
  with bounded memory.
"""

import os
import random
import socket
import struct
import threading
import time
import zlib

from confluent_kafka import TopicPartition

from helpers import DeliveryLog, consume_exact, consumer, flush_all, producer, unique_topic

CLOSE_TIMEOUT = 10.0


def enc_str(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def header_v1(api_key, api_version, correlation_id, client_id="skein-e2e-garbage"):
    return struct.pack(">hhi", api_key, api_version, correlation_id) + enc_str(client_id)


def header_v2(api_key, api_version, correlation_id, client_id="skein-e2e-garbage"):
    return header_v1(api_key, api_version, correlation_id, client_id) + b"\x00"  # no tagged fields


def connect(broker):
    s = socket.create_connection((broker.host, broker.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(s, timeout=CLOSE_TIMEOUT, stop_after_frame=False):
    """Read until the broker closes the connection (EOF or reset). Returns
    (closed, data). With stop_after_frame, return as soon as one whole response
    frame has arrived (closed=False then)."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            return True, data
        if not chunk:
            return True, data
        data += chunk
        if stop_after_frame and len(data) >= 4:
            n = struct.unpack(">i", data[:4])[0]
            if len(data) >= 4 + n:
                return False, data
    return False, data


def send_all(s, data):
    try:
        s.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        pass  # the broker may close before reading everything: that is allowed


def assert_closed_or_error(broker, payload, what, half_close=True):
    """Send `payload` on a fresh connection; the broker must close the connection or
    answer with a response frame within CLOSE_TIMEOUT s."""
    broker.assert_alive()
    s = connect(broker)
    try:
        send_all(s, payload)
        if half_close:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        closed, data = read_until_closed(s, stop_after_frame=not half_close)
        assert closed or len(data) >= 8, (
            f"{what}: the broker neither closed the connection nor answered within {CLOSE_TIMEOUT}s "
            f"(got {len(data)} byte(s))"
        )
        broker.assert_alive()
        return closed, data
    finally:
        s.close()


def api_versions_v0_ok(broker):
    """A well-formed ApiVersions v0 on a raw socket gets a well-formed answer."""
    s = connect(broker)
    try:
        s.sendall(frame(header_v1(18, 0, 1234)))
        closed, data = read_until_closed(s, stop_after_frame=True)
        assert not closed and len(data) >= 10, f"ApiVersions v0: closed={closed} data={data!r}"
        n, corr, err = struct.unpack(">iih", data[:10])
        assert corr == 1234 and err == 0, (corr, err)
        return data
    finally:
        s.close()


def produce_consume_still_works(broker, tag):
    topic = unique_topic(f"after-{tag}")
    dl = DeliveryLog()
    p = producer(broker.bootstrap, acks="all", **{"enable.idempotence": True, "compression.type": "lz4"})
    for i in range(200):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), headers=[("h", b"x")], partition=0,
                  on_delivery=dl)
    flush_all(p)
    assert not dl.errors(), dl.errors()[:3]
    msgs = consume_exact(broker.bootstrap, topic, 0, 200)
    assert [(m.key(), m.value(), m.headers()) for m in msgs] == [
        (f"k{i}".encode(), f"v{i}".encode(), [("h", b"x")]) for i in range(200)
    ]


def test_oversized_and_negative_frame_sizes(broker):
    # Kafka: size > socket.request.max.bytes or < 0 -> connection closed at once.
    for size in (2**31 - 1, 100 * 1024 * 1024 + 1, -1, -(2**31)):
        s = connect(broker)
        try:
            send_all(s, struct.pack(">i", size) + header_v1(3, 12, 7) + os.urandom(64))
            # No half-close: the broker must close by itself, not wait for the bytes.
            closed, data = read_until_closed(s)
            assert closed, f"frame size {size}: connection not closed within {CLOSE_TIMEOUT}s"
        finally:
            s.close()
        broker.assert_alive()
    rss = broker.rss_kib()
    assert rss is not None and rss < 512 * 1024, f"broker RSS {rss} KiB after oversized frames"
    api_versions_v0_ok(broker)


def test_unknown_api_key_and_absurd_versions(broker):
    # Kafka: unknown API key -> connection closed (or an error answer).
    for key in (32000, 999, -1):
        assert_closed_or_error(broker, frame(header_v1(key, 0, 11) + b"\x00" * 16), f"api key {key}",
                               half_close=False)
    # An absurd version of a known API other than ApiVersions -> error or close.
    for key, ver in ((0, 32000), (1, 999), (3, -5), (19, 1000)):
        assert_closed_or_error(broker, frame(header_v2(key, ver, 12) + b"\x00" * 16),
                               f"api key {key} version {ver}", half_close=False)

    # KIP-511: ApiVersions above the broker's range -> a v0 answer with error 35
    # (UNSUPPORTED_VERSION) and the supported ranges, so the client can retry.
    body_v3 = b"\x0askein-e2e\x061.0.0\x00"  # client_software_name, _version (compact), no tags
    s = connect(broker)
    try:
        s.sendall(frame(header_v2(18, 999, 4242) + body_v3))
        closed, data = read_until_closed(s, stop_after_frame=True)
        assert len(data) >= 14, f"ApiVersions v999: no answer (closed={closed}, {data!r})"
        n, corr, err, count = struct.unpack(">iihi", data[:14])
        assert corr == 4242, f"correlation id {corr}"
        assert err == 35, f"ApiVersions v999 answered error {err}, expected 35 UNSUPPORTED_VERSION"
        keys = {}
        for i in range(count):
            k, lo, hi = struct.unpack_from(">hhh", data, 14 + 6 * i)
            keys[k] = (lo, hi)
        assert 18 in keys, f"ApiVersions itself missing from the ranges: {keys}"
        assert keys[18][1] >= 3, keys[18]
        for k in (0, 1, 2, 3):  # Produce, Fetch, ListOffsets, Metadata
            assert k in keys, f"api key {k} not advertised: {keys}"
    finally:
        s.close()
    api_versions_v0_ok(broker)


def message_set_v0(value):
    """A legacy (magic 0) message set of one message, as Produce v0-v2 carries."""
    msg = struct.pack(">bb", 0, 0) + struct.pack(">i", -1) + struct.pack(">i", len(value)) + value
    msg = struct.pack(">I", zlib.crc32(msg)) + msg
    return struct.pack(">qi", 0, len(msg)) + msg


def test_produce_v0_to_v2_listed_but_refused(broker):
    # ApiVersions lists Produce from v0 (KAFKA-18659) up to the highest version served.
    data = api_versions_v0_ok(broker)
    count = struct.unpack_from(">i", data, 10)[0]
    ranges = dict((k, (lo, hi)) for k, lo, hi in (struct.unpack_from(">hhh", data, 14 + 6 * i) for i in range(count)))
    assert ranges[0] == (0, 9), f"Produce listed as {ranges[0]}, expected (0, 9)"

    topic = unique_topic("produce-v0")
    p = producer(broker.bootstrap)
    p.produce(topic, value=b"seed", partition=0)
    flush_all(p)
    for version in (0, 1, 2):
        s = connect(broker)
        try:
            # acks=1: [topic: name, [partition: index, message set]] for partitions 0 and 5.
            body = struct.pack(">hi", 1, 5000) + struct.pack(">i", 1) + enc_str(topic) + struct.pack(">i", 2)
            for part in (0, 5):
                ms = message_set_v0(b"legacy-%d" % version)
                body += struct.pack(">ii", part, len(ms)) + ms
            s.sendall(frame(header_v1(0, version, 600 + version) + body))
            closed, data = read_until_closed(s, stop_after_frame=True)
            assert not closed and len(data) >= 8, f"Produce v{version}: closed={closed} data={data!r}"
            size, corr, ntopics = struct.unpack_from(">iii", data, 0)
            assert size == len(data) - 4 and corr == 600 + version and ntopics == 1, (size, corr, ntopics)
            off = 12
            tlen = struct.unpack_from(">h", data, off)[0]
            assert data[off + 2:off + 2 + tlen] == topic.encode()
            off += 2 + tlen
            nparts = struct.unpack_from(">i", data, off)[0]
            off += 4
            got = []
            for _ in range(nparts):
                idx, err, base = struct.unpack_from(">ihq", data, off)
                off += 14
                if version >= 2:
                    assert struct.unpack_from(">q", data, off)[0] == -1  # log_append_time
                    off += 8
                got.append((idx, err, base))
            assert got == [(0, 35, -1), (5, 35, -1)], f"Produce v{version} answered {got}"
            if version >= 1:
                assert struct.unpack_from(">i", data, off)[0] == 0  # throttle_time_ms
                off += 4
            assert off == len(data), f"Produce v{version}: {len(data) - off} unexpected trailing byte(s)"
            # The connection goes on serving.
            s.sendall(frame(header_v1(18, 0, 700 + version)))
            closed, data = read_until_closed(s, stop_after_frame=True)
            assert not closed and struct.unpack_from(">ih", data, 4) == (700 + version, 0), data[:10]
        finally:
            s.close()
        # acks=0 expects no answer, so the refusal is a closed connection.
        body = struct.pack(">hi", 0, 5000) + struct.pack(">i", 1) + enc_str(topic) + struct.pack(">i", 1)
        ms = message_set_v0(b"legacy-acks0")
        body += struct.pack(">ii", 0, len(ms)) + ms
        closed, data = assert_closed_or_error(broker, frame(header_v1(0, version, 800) + body),
                                              f"Produce v{version} acks=0", half_close=False)
        assert closed and data == b"", f"Produce v{version} acks=0: closed={closed} data={data!r}"
    c = consumer(broker.bootstrap)
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    finally:
        c.close()
    assert (lo, hi) == (0, 1), f"a refused Produce v0-v2 changed the log: watermarks {(lo, hi)}"
    produce_consume_still_works(broker, "produce-v0")


def test_truncated_and_malformed_frames(broker):
    # Truncated: the size announces more than is sent, then the client's EOF.
    assert_closed_or_error(broker, struct.pack(">i", 100) + header_v1(3, 1, 5)[:6], "truncated frame")
    assert_closed_or_error(broker, b"\x00\x00", "truncated size")
    # Size 0 and a header cut short inside a complete frame.
    assert_closed_or_error(broker, frame(b""), "empty frame", half_close=False)
    assert_closed_or_error(broker, frame(b"\x00\x03"), "2-byte header", half_close=False)
    # client_id length beyond the frame.
    assert_closed_or_error(broker, frame(struct.pack(">hhih", 3, 1, 6, 5000) + b"ab"), "client_id overrun",
                           half_close=False)
    # Valid headers, bodies that do not parse: Metadata v12 with an absurd topic count,
    # Produce v9 with random bytes, Fetch v12 truncated.
    assert_closed_or_error(broker, frame(header_v2(3, 12, 21) + b"\xff\xff\xff\xff\x7f"), "Metadata v12 bad body",
                           half_close=False)
    assert_closed_or_error(broker, frame(header_v2(0, 9, 22) + os.urandom(300)), "Produce v9 random body",
                           half_close=False)
    assert_closed_or_error(broker, frame(header_v2(1, 12, 23) + b"\x00\x00"), "Fetch v12 truncated body",
                           half_close=False)
    # Produce v3 (non-flexible) whose record set is a corrupt batch: Kafka answers
    # CORRUPT_MESSAGE (2) or closes; it must not store anything.
    topic = unique_topic("garbage-batch")
    p = producer(broker.bootstrap)
    p.produce(topic, value=b"seed", partition=0)
    flush_all(p)
    batch = bytearray(os.urandom(120))
    batch[0:8] = b"\x00" * 8
    batch[8:12] = struct.pack(">i", len(batch) - 12)
    batch[16] = 2  # magic 2, CRC is garbage
    body = (
        struct.pack(">h", -1)  # transactional_id null
        + struct.pack(">hi", 1, 10000)  # acks, timeout
        + struct.pack(">i", 1) + enc_str(topic)
        + struct.pack(">i", 1) + struct.pack(">i", 0)
        + struct.pack(">i", len(batch)) + bytes(batch)
    )
    closed, data = assert_closed_or_error(broker, frame(header_v1(0, 3, 31) + body), "corrupt batch",
                                          half_close=False)
    if not closed:
        # Response v3: corr, [topics: name, [partitions: index, error_code, ...]]
        corr, ntopics = struct.unpack_from(">ii", data, 4)
        assert corr == 31 and ntopics == 1
        off = 12
        tlen = struct.unpack_from(">h", data, off)[0]
        off += 2 + tlen
        nparts, pidx, perr = struct.unpack_from(">iih", data, off)
        assert perr in (2, 87), f"corrupt batch answered error {perr}, expected 2 CORRUPT_MESSAGE"
    c = consumer(broker.bootstrap)
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    finally:
        c.close()
    assert (lo, hi) == (0, 1), f"a corrupt batch changed the log: watermarks {(lo, hi)}"
    produce_consume_still_works(broker, "malformed")


def test_random_garbage_storm(broker):
    # Many connections of random bytes at once, some with a plausible small size
    # prefix, all ending with the client's EOF; a normal client works meanwhile.
    rng = random.Random(20240601)
    payloads = []
    for i in range(60):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400)))
        if i % 3 == 0:
            payloads.append(frame(body))  # a complete frame of garbage
        elif i % 3 == 1:
            payloads.append(struct.pack(">i", rng.randint(len(body) + 1, 100_000)) + body)  # truncated
        else:
            payloads.append(body)  # raw noise
    hung = []
    errors = []

    def worker(chunk):
        for pl in chunk:
            try:
                s = connect(broker)
            except OSError as e:
                errors.append(f"connect failed: {e}")
                continue
            try:
                send_all(s, pl)
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                closed, _ = read_until_closed(s)
                if not closed:
                    hung.append(pl[:16].hex())
            finally:
                s.close()

    # A connection left open mid-frame (no EOF) while everything else goes on: it must
    # not block other clients.
    stuck = connect(broker)
    stuck.sendall(struct.pack(">i", 5000) + header_v1(3, 1, 99))
    try:
        threads = [threading.Thread(target=worker, args=(payloads[i::6],)) for i in range(6)]
        for t in threads:
            t.start()
        produce_consume_still_works(broker, "storm")
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "garbage workers did not finish"
        assert not errors, errors[:5]
        assert not hung, f"{len(hung)} garbage connection(s) not closed after EOF, first: {hung[:5]}"
        broker.assert_alive()
        api_versions_v0_ok(broker)
        produce_consume_still_works(broker, "storm2")
    finally:
        stuck.close()
    broker.assert_alive()
