"""kafkajs 2.x (Node.js) against skein.

Kafka behaviour asserted: kafkajs's admin creates a topic with configs (and is told on a second
try that it exists), reads metadata, topic offsets and configs; its idempotent producer sends
gzip batches with acks=-1 to chosen partitions. The records are read back with confluent-kafka
and compared: keys, values, headers, per-partition order.
"""

import json
import os
import subprocess

from helpers import consume_exact, unique_topic

JS = os.path.join(os.path.dirname(__file__), "js", "kafkajs_check.js")


def test_kafkajs_admin_and_idempotent_gzip_producer(broker):
    topic = unique_topic("kafkajs")
    n = 400
    r = subprocess.run(["node", JS, broker.bootstrap, topic, str(n)], capture_output=True, timeout=90)
    assert r.returncode == 0, f"kafkajs failed:\n{r.stdout.decode()}\n{r.stderr.decode()}"
    assert json.loads(r.stdout.decode().strip().splitlines()[-1]) == {"ok": True, "total": n}
    for p in range(2):
        msgs = consume_exact(broker.bootstrap, topic, p, n // 2)
        want = [i for i in range(n) if i % 2 == p]
        assert [m.key() for m in msgs] == [b"k%d" % i for i in want]
        assert [m.value() for m in msgs] == [b"v%d" % i for i in want]
        assert [m.headers() for m in msgs] == [[("h", b"x%d" % i)] for i in want]
        assert [m.offset() for m in msgs] == list(range(n // 2))
