"""One consumer-group member (confluent-kafka) as its own process, for the group tests.

Usage: group_worker.py BOOTSTRAP TOPIC GROUP OUT [--delay-ms N] [--commit-every N]
                       [--idle-s S] [--session-ms MS] [--strategy S] [--instance-id ID]
                       [--protocol classic|consumer]

Subscribes TOPIC in GROUP and writes one line "partition offset value" per record to OUT
(flushed before the record's offset can be committed), then commits synchronously every
--commit-every records and whenever partitions are revoked, so a record is consumed exactly
once in the group unless this process is killed (then only the records after its last commit
come again). Exits 0 after --idle-s seconds without records (once it has had an assignment)
or on SIGTERM, committing and leaving the group; lines "assigned ..." / "revoked ..." go to
stderr. A fatal error (librdkafka's, such as FENCED_INSTANCE_ID for a static member another
process replaced) is printed as "fatal error: NAME: text" and ends the process with exit code 3,
without committing.
"""

import argparse
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException

stop = False


def on_term(signum, frame):
    global stop
    stop = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("group")
    ap.add_argument("out")
    ap.add_argument("--delay-ms", type=float, default=0)
    ap.add_argument("--commit-every", type=int, default=200)
    ap.add_argument("--idle-s", type=float, default=8)
    ap.add_argument("--session-ms", type=int, default=6000)
    ap.add_argument("--strategy", default="range,roundrobin")
    ap.add_argument("--instance-id")
    ap.add_argument("--protocol", default="classic")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    conf = {"group.instance.id": a.instance_id} if a.instance_id else {}
    if a.protocol == "consumer":
        # KIP-848: the broker assigns; session and heartbeat timing are the broker's.
        conf["group.protocol"] = "consumer"
    else:
        conf.update({
            "partition.assignment.strategy": a.strategy,
            "session.timeout.ms": a.session_ms,
            "heartbeat.interval.ms": 500,
        })
    fatal = []

    def on_error(err):
        print(f"client error: {err.name()} fatal={err.fatal()}: {err.str()}", file=sys.stderr,
              flush=True)
        if err.fatal():
            fatal.append(err)

    c = Consumer({
        **conf,
        "error_cb": on_error,
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 10000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "topic.metadata.refresh.interval.ms": 2000,
    })
    out = open(a.out, "a", buffering=1)
    state = {"assigned": False, "assigned_at": 0.0, "since_commit": 0}

    def commit():
        if state["since_commit"] == 0:
            return
        try:
            c.commit(asynchronous=False)
            state["since_commit"] = 0
        except KafkaException as e:
            print(f"commit failed: {e}", file=sys.stderr, flush=True)

    def on_assign(consumer, parts):
        state["assigned"] = True
        state["assigned_at"] = time.monotonic()
        print("assigned", sorted(p.partition for p in parts), file=sys.stderr, flush=True)

    def on_revoke(consumer, parts):
        print("revoked", sorted(p.partition for p in parts), file=sys.stderr, flush=True)
        commit()

    c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke)
    last = time.monotonic()
    while not stop and not fatal:
        m = c.poll(0.2)
        if m is None:
            if state["assigned"] and time.monotonic() - max(last, state["assigned_at"]) > a.idle_s:
                break
            continue
        if m.error():
            # librdkafka hands a fatal error to poll as _FATAL (the broker's code is in the text).
            if m.error().fatal() or m.error().code() == KafkaError._FATAL:
                fatal.append(m.error())
            elif m.error().code() != KafkaError._PARTITION_EOF:
                print(f"consumer error: {m.error()}", file=sys.stderr, flush=True)
            continue
        last = time.monotonic()
        out.write(f"{m.partition()} {m.offset()} {m.value().decode()}\n")
        state["since_commit"] += 1
        if state["since_commit"] >= a.commit_every:
            commit()
        if a.delay_ms:
            time.sleep(a.delay_ms / 1000)
    if fatal:
        e = fatal[0]
        print(f"fatal error: {e.name()}: {e.str()}", file=sys.stderr, flush=True)
        out.close()
        sys.exit(3)
    commit()
    c.close()
    out.close()


if __name__ == "__main__":
    main()
