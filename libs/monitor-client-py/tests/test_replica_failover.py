"""Two real concept-service replicas (own processes, one NATS: they share the run state through
JetStream KV) behind one MonitorClient target list; the replica serving the run is SIGKILLed while
checkpoints are in flight on its stream, the run finishes on the other replica, and ClickHouse (via
the recorder) holds every checkpoint and every neuron label exactly once."""

import os
import signal
import threading

import numpy as np
import pytest

import concept_monitor as cm
from concept_monitor import LayerActivations, LayerSpec, MonitorClient, RunSpec
from concept_monitor.client import parse_targets
from conftest import NODE, PROBE_IMAGES, Proc, free_port, wait_rows, wait_serving

LAYERS = [("fc1", 32), ("fc2", 64)]
NEURONS = sum(w for _, w in LAYERS)
STEPS = 16
KILL_AFTER_ACKS = 4


def start_replica(stack, name: str) -> Proc:
    port = free_port()
    env = {
        **stack.env,
        "CM_GRPC_LISTEN": f"127.0.0.1:{port}",
        "CM_DISSECT_WORKERS": "1",
        "CM_SERVICE_HEALTH_PORT": str(free_port()),
    }
    p = Proc(name, [NODE, "--import", "tsx", "apps/concept-service/src/main.ts"], env, stack.dir)
    p.target = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    wait_serving(p.target, p)  # type: ignore[attr-defined]
    return p


def test_targets_are_parsed_in_order_from_a_list_or_a_comma_separated_string():
    assert parse_targets("a:1, b:2,,") == ["a:1", "b:2"]
    assert parse_targets(["a:1", "b:2,c:3"]) == ["a:1", "b:2", "c:3"]
    c = MonitorClient(["a:1", "b:2"])
    assert c.targets == ["a:1", "b:2"] and c.target == "a:1"
    for bad in ("", " , ", [], [""]):
        with pytest.raises(cm.CmError) as e:
            MonitorClient(bad)
        assert e.value.code == "INVALID_ARGUMENT" and "names no concept service" in str(e.value)
    with pytest.raises(cm.CmError) as e:
        MonitorClient(["a:1", 2])  # type: ignore[list-item]
    assert e.value.code == "INVALID_ARGUMENT"


def test_a_first_replica_that_is_down_hands_the_run_to_the_next(stack, bundle):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    c = MonitorClient([dead, stack.target], reconnect_initial_s=0.05, reconnect_max_s=0.2)
    assert c.target == dead
    c.start_run(RunSpec("py-first-down", "failover", "standard", bundle.id, [LayerSpec("d", 6, "dense")], {}))
    assert c.target == stack.target and c.stats().connected
    g = np.random.default_rng(3)
    assert c.send_checkpoint(0, [LayerActivations("d", g.standard_normal((PROBE_IMAGES, 6)).astype(np.float32))])
    stats = c.close()
    assert stats.acknowledged_checkpoints == 1 and stats.errors == [], stats.as_dict()
    assert wait_rows(stack.query, "py-first-down", 6)["final"] == 6


def test_replica_sigkilled_mid_run_the_run_finishes_on_the_other_every_checkpoint_stored_once(stack, bundle):
    a = start_replica(stack, "replica-a")
    b = start_replica(stack, "replica-b")
    try:
        killed = threading.Event()
        at_kill = {}

        def on_ack(result):
            # in the sender thread, on the 4th ack: the replica dies with later checkpoints written
            # on its stream (it is dissecting the next one), none of them acknowledged
            if result.step == KILL_AFTER_ACKS - 1 and not killed.is_set():
                s = c.stats()
                os.kill(a.pid, signal.SIGKILL)
                at_kill.update(acked=s.acknowledged_checkpoints, pending=s.pending_checkpoints, sent=s.sent_bytes)
                killed.set()

        c = MonitorClient(
            f"{a.target},{b.target}",
            reconnect_initial_s=0.05,
            reconnect_max_s=0.5,
            on_ack=on_ack,
        )
        run_id = "py-replica-failover"
        c.start_run(
            RunSpec(run_id, "failover", "standard", bundle.id, [LayerSpec(n, w, "dense") for n, w in LAYERS], {})
        )
        assert c.target == a.target
        g = np.random.default_rng(16)
        for step in range(STEPS):
            layers = [LayerActivations(n, g.standard_normal((PROBE_IMAGES, w)).astype(np.float32)) for n, w in LAYERS]
            assert c.send_checkpoint(step, layers, {"loss": 1.0 / (step + 1)})
        assert killed.wait(120), "replica A never acknowledged 4 checkpoints"
        # mid-run, mid-checkpoint: unacknowledged checkpoints held, and more of them written on A's
        # stream than A had acknowledged (at least one more checkpoint's activations)
        assert at_kill["pending"] == STEPS - at_kill["acked"] > 0, at_kill
        assert at_kill["sent"] >= (at_kill["acked"] + 1) * PROBE_IMAGES * NEURONS * 4, at_kill
        a.p.wait(10)
        assert a.p.returncode == -signal.SIGKILL
        stats = c.close(timeout_s=180)
        assert stats.acknowledged_checkpoints == STEPS, stats.as_dict()
        assert (stats.dropped_checkpoints, stats.rejected_checkpoints, stats.errors) == (0, 0, []), stats.as_dict()
        assert stats.reconnects >= 1 and stats.resent_checkpoints >= 1, stats.as_dict()
        assert c.target == b.target  # finished on B

        counts = wait_rows(stack.query, run_id, STEPS * NEURONS)
        assert counts["final"] == STEPS * NEURONS and counts["distinct"] == STEPS * NEURONS, counts
        cps = stack.query(
            f"SELECT (SELECT count() FROM checkpoints FINAL WHERE run_id = '{run_id}') AS final, "
            f"(SELECT uniqExact(step) FROM checkpoints WHERE run_id = '{run_id}') AS steps, "
            f"(SELECT min(step) FROM checkpoints WHERE run_id = '{run_id}') AS lo, "
            f"(SELECT max(step) FROM checkpoints WHERE run_id = '{run_id}') AS hi"
        )[0]
        assert {k: int(v) for k, v in cps.items()} == {"final": STEPS, "steps": STEPS, "lo": 0, "hi": STEPS - 1}
        per = stack.query(
            f"SELECT layer, step, count() AS n, uniqExact(neuron) AS u FROM neuron_labels FINAL "
            f"WHERE run_id = '{run_id}' GROUP BY layer, step"
        )
        got = sorted((r["layer"], int(r["step"]), int(r["n"]), int(r["u"])) for r in per)
        assert got == sorted((n, st, w, w) for n, w in LAYERS for st in range(STEPS))
        runs = stack.query(f"SELECT status FROM runs FINAL WHERE run_id = '{run_id}'")
        assert runs == [{"status": "completed"}]
    finally:
        b.stop()
        a.stop()
