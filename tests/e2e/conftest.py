"""Fixtures for skein's end-to-end tests: real `skein broker` processes driven by
real Kafka clients (kcat, confluent-kafka, kafka-python) and raw sockets.

The broker binary comes from the environment variable SKEIN_BIN (ci/test.sh sets it).
Nothing here skips: a missing binary or tool is a test failure with a message.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Hard limit per test (seconds). Every test has its own bounded loops and timeouts;
# this only turns a hang into a failure instead of stalling CI.
TEST_TIME_LIMIT = int(os.environ.get("SKEIN_E2E_TEST_TIMEOUT", "150"))

START_TIMEOUT = 20.0  # seconds for the broker to accept TCP connections
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL


def skein_bin():
    path = os.environ.get("SKEIN_BIN")
    if not path:
        for cand in ("target/release/skein", "target/debug/skein"):
            cand = os.path.join(REPO_ROOT, cand)
            if os.path.exists(cand):
                path = cand
                break
    if not path:
        pytest.fail(
            "SKEIN_BIN is not set and no target/{release,debug}/skein exists: "
            "build the broker (cargo build --release --bin skein) or run ./ci/test.sh",
            pytrace=False,
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"SKEIN_BIN={path!r} is not an executable file", pytrace=False)
    return os.path.abspath(path)


_HANDED_OUT = set()


def free_port():
    """A port free now and not handed out before in this session: the ports of one cluster are
    picked before any broker binds them, so the kernel may offer the same one twice (a client
    port and a controller port collided in a CI run)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_open(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


ANSI = re.compile(r"\x1b\[[0-9;]*m")
FRAME = re.compile(r"^\s+(\d+): (.*)$")


def condense(text):
    """Strip colours and shorten Rust backtraces to the frames that matter (the first
    few, and every frame in skein's own code), without source-location lines."""
    out = []
    in_bt = False
    for line in ANSI.sub("", text).splitlines():
        if line.startswith("stack backtrace:"):
            in_bt = True
            out.append(line)
            continue
        if in_bt:
            m = FRAME.match(line)
            if m:
                if int(m.group(1)) < 3 or "skein" in m.group(2):
                    out.append(line)
                continue
            if line.lstrip().startswith("at "):
                continue
            in_bt = False
        out.append(line)
    return "\n".join(out)


class BrokerError(AssertionError):
    pass


class Broker:
    """One `skein broker` process on 127.0.0.1:<port> with its own data dir.

    .bootstrap   "127.0.0.1:PORT"
    .data_dir    the --data-dir
    .start()     start (on the same port and data dir) and wait until the port accepts
    .stop()      SIGTERM, wait up to 10 s, then SIGKILL; returns the exit code
    .restart()   stop() then start(); returns stop()'s exit code
    .kill9()     SIGKILL, wait for the process to be gone
    .alive()     the process is running
    .log_tail()  the last lines of the broker's stdout+stderr (all starts appended)
    """

    def __init__(self, binary, data_dir, log_path, node_id=1, log_level=None, extra_args=()):
        self.binary = binary
        self.data_dir = str(data_dir)
        self.log_path = str(log_path)
        self.node_id = node_id
        self.log_level = log_level or os.environ.get("SKEIN_LOG_LEVEL", "info")
        self.extra_args = list(extra_args)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.proc = None
        self.expected_exit = True  # set False while we expect the process to be running
        self.starts = 0

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def argv(self):
        return [
            self.binary,
            "broker",
            "--listen",
            self.bootstrap,
            "--data-dir",
            self.data_dir,
            "--node-id",
            str(self.node_id),
            "--log-level",
            self.log_level,
        ] + self.extra_args

    def _log(self, line):
        with open(self.log_path, "a") as f:
            f.write(f"\n===== [e2e harness {time.strftime('%H:%M:%S')}] {line} =====\n")

    def start(self, timeout=START_TIMEOUT):
        self.launch()
        return self.wait_ready(timeout)

    def launch(self):
        """Start the process without waiting (a cluster member serves only once a quorum of
        voters is up)."""
        assert not self.alive(), "broker already running"
        self.starts += 1
        self._log(f"start #{self.starts}: {' '.join(self.argv())}")
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv(),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
            )
        finally:
            logf.close()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        """Wait until the port accepts connections (the broker is caught up and registered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise BrokerError(
                    f"broker exited with code {rc} during start-up\n{self.log_tail()}"
                )
            if port_open(self.host, self.port):
                self.expected_exit = False
                return self
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        raise BrokerError(
            f"broker did not accept connections on {self.bootstrap} within {timeout}s\n"
            f"{self.log_tail()}"
        )

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait, SIGKILL after `timeout` s. Returns the exit code (negative
        for a signal, as subprocess reports it)."""
        if self.proc is None:
            return None
        self.expected_exit = True
        if self.proc.poll() is None:
            self._log("SIGTERM")
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._log(f"no exit {timeout}s after SIGTERM: SIGKILL")
                self.proc.kill()
                self.proc.wait()
                self.last_stop_timed_out = True
                return self.proc.returncode
        self.last_stop_timed_out = False
        self._log(f"exited with code {self.proc.returncode}")
        return self.proc.returncode

    def restart(self):
        rc = self.stop()
        self.start()
        return rc

    def kill9(self):
        assert self.proc is not None
        self.expected_exit = True
        if self.proc.poll() is None:
            self._log("SIGKILL (kill -9)")
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def rss_kib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def log_tail(self, lines=60):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return "(no broker log)"
        text = condense(data.decode("utf-8", "replace")).splitlines()
        tail = "\n".join(text[-lines:])
        return f"--- broker log tail ({self.log_path}) ---\n{tail}\n--- end of broker log ---"

    def assert_alive(self):
        if not self.alive():
            raise BrokerError(
                f"broker process is not running (exit code {self.proc.returncode if self.proc else None})\n"
                f"{self.log_tail()}"
            )


@pytest.fixture
def broker_factory(request, tmp_path):
    """Make brokers (not yet started) with their own data dir and log file."""
    made = []
    request.node._skein_brokers = made
    binary = skein_bin()

    def make(name="broker", **kw):
        d = tmp_path / f"{name}-data"
        d.mkdir()
        b = Broker(binary, d, tmp_path / f"{name}.log", **kw)
        made.append(b)
        return b

    yield make

    problems = []
    for b in made:
        if b.proc is not None and not b.expected_exit and b.proc.poll() is not None:
            problems.append(
                f"broker {b.bootstrap} died during the test (exit code {b.proc.returncode})\n"
                f"{b.log_tail()}"
            )
        b.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def cluster_factory(broker_factory):
    """Make an n-broker cluster where every broker is a metadata-quorum voter, start all of
    them and wait until each serves. Returns the list of brokers (node ids 1..n)."""

    def make(n=3, extra_args=()):
        ports = [free_port() for _ in range(n)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(ports))
        brokers = [
            broker_factory(
                name=f"node{i + 1}",
                node_id=i + 1,
                extra_args=["--voters", voters, *extra_args],
            )
            for i in range(n)
        ]
        for b in brokers:
            b.controller_port = ports[b.node_id - 1]
            b.voters = voters
            b.launch()
        for b in brokers:
            b.wait_ready()
        return brokers

    return make


@pytest.fixture
def broker(broker_factory):
    """A started single-node broker on a free port and a fresh data dir."""
    return broker_factory().start()


@pytest.fixture
def kcat():
    path = shutil.which("kcat")
    if not path:
        pytest.fail("kcat is not installed: run ./ci/setup.sh (apt-get install kcat)", pytrace=False)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Hard time limit for each test body (SIGALRM in the main thread)."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded the e2e harness's {TEST_TIME_LIMIT}s limit")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIME_LIMIT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the tail of every broker's log to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in getattr(item, "_skein_brokers", []):
            alive = b.alive()
            state = "running" if alive else f"exited ({b.proc.returncode if b.proc else 'never started'})"
            rep.sections.append(
                (f"skein broker {b.bootstrap} [{state}] log tail ({rep.when})", b.log_tail(80))
            )
