"""Fixtures: real servers on free 127.0.0.1 ports, started once per session and stopped by pid.

- `bundle`: a small probe bundle made by `cm probe make --root` (128 images: CLIP-Dissect's top_k is 100)
- `stack`:  nats-server + clickhouse-server (`cm stack up --servers-only`), the concept service and
            the recorder as their own processes (apps/*/src/main.ts), ClickHouse queried over HTTP
- `serve`:  starts `cm serve` (embedded chDB store) on demand; its store is read with `cm sql` after
            it stopped (a chDB folder is used by one process at a time)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(PACKAGE))
NODE = os.environ.get("CM_NODE", "node")
CM = [NODE, os.path.join(REPO, "apps", "cli", "bin", "cm.js")]
PROBE_IMAGES = 128

sys.path.insert(0, PACKAGE)

import concept_monitor as cm  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cm(args: List[str], env: Optional[Dict[str, str]] = None, timeout: float = 120) -> str:
    res = subprocess.run(
        CM + args, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if res.returncode != 0:
        raise RuntimeError(f"cm {' '.join(args)} exited {res.returncode}: {res.stderr.strip()[-2000:]}")
    return res.stdout


class Proc:
    """A child process in its own process group, logging to a file, stopped by its pid."""

    def __init__(self, name: str, args: List[str], env: Dict[str, str], log_dir: str) -> None:
        self.name = name
        self.log_path = os.path.join(log_dir, f"{name}-{time.time_ns()}.log")
        self._log = open(self.log_path, "wb")
        self.p = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait(10)
        self._log.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def wait_serving(target: str, proc: Proc, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited {proc.p.returncode}: {proc.log()[-3000:]}")
        try:
            if cm.health(target, timeout_s=1.0)["status"] == "SERVING":
                return
        except cm.CmError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not SERVING at {target} after {timeout} s: {proc.log()[-3000:]}")


def wait_http(url: str, proc: Proc, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited {proc.p.returncode}: {proc.log()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not healthy at {url}: {proc.log()[-3000:]}")


@dataclass
class Bundle:
    id: str
    dir: str
    root: str


@pytest.fixture(scope="session")
def workdir():
    with tempfile.TemporaryDirectory(prefix="cm-py-") as d:
        yield d


@pytest.fixture(scope="session")
def bundle(workdir) -> Bundle:
    root = os.path.join(workdir, "bundles")
    out = run_cm(["probe", "make", "--images", str(PROBE_IMAGES), "--seed", "7", "--root", root])
    bid, d = out.strip().split("\t")
    return Bundle(bid, d, root)


@dataclass
class Stack:
    """nats-server + clickhouse-server + concept service + recorder, on free ports."""

    dir: str
    bundle_root: str
    env: Dict[str, str]
    clickhouse_url: str
    database: str
    grpc_port: int
    service: Optional[Proc] = None
    recorder: Optional[Proc] = None
    procs: List[Proc] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start_service(self) -> Proc:
        health = free_port()
        env = {
            **self.env,
            "CM_GRPC_LISTEN": self.target,
            "CM_DISSECT_WORKERS": "1",
            "CM_SERVICE_HEALTH_PORT": str(health),
        }
        p = Proc("concept-service", [NODE, "--import", "tsx", "apps/concept-service/src/main.ts"], env, self.dir)
        self.procs.append(p)
        wait_serving(self.target, p)
        self.service = p
        return p

    def start_recorder(self) -> Proc:
        health = free_port()
        env = {
            **self.env,
            "CM_RECORDER_HEALTH_PORT": str(health),
            "CM_RECORDER_BATCH_MESSAGES": "5",
            "CM_RECORDER_ACK_WAIT_MS": "2000",
        }
        p = Proc("recorder", [NODE, "--import", "tsx", "apps/recorder/src/main.ts"], env, self.dir)
        self.procs.append(p)
        wait_http(f"http://127.0.0.1:{health}/healthz", p)
        self.recorder = p
        return p

    def query(self, sql: str) -> List[Dict[str, object]]:
        q = urllib.parse.urlencode({"database": self.database, "query": sql + " FORMAT JSON"})
        with urllib.request.urlopen(f"{self.clickhouse_url}/?{q}", timeout=30) as r:
            return json.loads(r.read())["data"]


@pytest.fixture(scope="session")
def stack(workdir, bundle):
    d = os.path.join(workdir, "stack")
    ports = {k: str(free_port()) for k in ("CM_NATS_PORT", "CM_NATS_MONITOR_PORT", "CM_CLICKHOUSE_HTTP_PORT", "CM_CLICKHOUSE_TCP_PORT")}
    base = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "CM_HOME": os.path.join(workdir, "home"),
        "CM_STACK_DIR": d,
        "CM_LOG_LEVEL": "warn",
        **ports,
    }
    run_cm(["stack", "up", "--servers-only"], env=base, timeout=180)
    s = Stack(
        dir=d,
        bundle_root=bundle.root,
        env={
            **base,
            "CM_NATS_URL": f"nats://127.0.0.1:{ports['CM_NATS_PORT']}",
            "CM_CLICKHOUSE_URL": f"http://127.0.0.1:{ports['CM_CLICKHOUSE_HTTP_PORT']}",
            "CM_CLICKHOUSE_DATABASE": "cm_py",
            "CM_BUNDLE_DIR": bundle.root,
        },
        clickhouse_url=f"http://127.0.0.1:{ports['CM_CLICKHOUSE_HTTP_PORT']}",
        database="cm_py",
        grpc_port=free_port(),
    )
    try:
        s.start_recorder()
        s.start_service()
        yield s
    finally:
        for p in reversed(s.procs):
            p.stop()
        run_cm(["stack", "down"], env=base, timeout=120)


@dataclass
class Serve:
    """One `cm serve` process and its store folder."""

    proc: Proc
    target: str
    store: str
    env: Dict[str, str]

    def stop(self) -> None:
        self.proc.stop(signal.SIGTERM)
        if self.proc.p.returncode not in (0, None):
            raise RuntimeError(f"cm serve exited {self.proc.p.returncode}: {self.proc.log()[-3000:]}")

    def query(self, sql: str) -> List[Dict[str, object]]:
        """Read the store (only once the server has stopped)."""
        return json.loads(run_cm(["sql", "--store", self.store, "--format", "json", sql]))


@pytest.fixture
def serve(workdir, bundle):
    """A factory: serve(name) starts `cm serve` on a fresh store; every one is stopped at the end."""
    started: List[Serve] = []

    def start(name: str) -> Serve:
        port = free_port()
        store = os.path.join(workdir, f"serve-{name}-store")
        env = {
            **os.environ,
            "CM_HOME": os.path.join(workdir, f"serve-{name}-home"),
            "CM_BUNDLE_DIR": bundle.root,
            "CM_LOG_LEVEL": "warn",
        }
        args = CM + ["serve", "--listen", f"127.0.0.1:{port}", "--store", store, "--no-ui", "--health-port", "0", "--workers", "1"]
        p = Proc(f"serve-{name}", args, env, workdir)
        s = Serve(p, f"127.0.0.1:{port}", store, env)
        started.append(s)
        wait_serving(s.target, p)
        return s

    yield start
    for s in started:
        s.proc.stop()  # the latest process of each (a test may have restarted it)


def label_counts(query, run_id: str) -> Dict[str, int]:
    """raw rows, rows after FINAL, distinct (layer, step, neuron) of a run's neuron_labels."""
    rid = run_id.replace("'", "\\'")
    rows = query(
        f"SELECT (SELECT count() FROM neuron_labels WHERE run_id = '{rid}') AS raw, "
        f"(SELECT count() FROM neuron_labels FINAL WHERE run_id = '{rid}') AS final, "
        f"(SELECT uniqExact(layer, step, neuron) FROM neuron_labels WHERE run_id = '{rid}') AS dist"
    )
    r = rows[0]
    return {"raw": int(r["raw"]), "final": int(r["final"]), "distinct": int(r["dist"])}


def wait_rows(query, run_id: str, expected: int, timeout: float = 60) -> Dict[str, int]:
    deadline = time.monotonic() + timeout
    counts = label_counts(query, run_id)
    while min(counts.values()) < expected and time.monotonic() < deadline:
        time.sleep(0.3)
        counts = label_counts(query, run_id)
    # the three counts are read one after the other while rows may still arrive: read them again,
    # after the recorder's batch window, for a consistent answer (and to see late duplicates)
    time.sleep(1.0)
    return label_counts(query, run_id)
