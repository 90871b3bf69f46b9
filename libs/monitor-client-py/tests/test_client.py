"""MonitorClient against the real concept service: error codes as the TS client maps them (a
refused run raises, a rejected checkpoint is blamed by its cm-step trailer and the others go on),
and fork safety."""

import multiprocessing
import time

import numpy as np
import pytest

import concept_monitor as cm
from concept_monitor import LayerActivations, LayerSpec, MonitorClient, RunSpec
from conftest import PROBE_IMAGES, wait_rows
from training import SmallCnn


def spec(run_id, bundle_id):
    return RunSpec(run_id, "client-test", "standard", bundle_id, [LayerSpec("d", 6, "dense")], {"case": "client"})


def test_an_unknown_bundle_refuses_the_run_with_not_found(stack):
    c = MonitorClient(stack.target)
    with pytest.raises(cm.CmError) as e:
        c.start_run(spec("py-unknown-bundle", "0123456789abcdef"))
    assert e.value.code == "NOT_FOUND" and "0123456789abcdef" in str(e.value)
    c.close()


def test_ten_thousand_layers_are_refused_within_5_s_in_a_short_message_and_the_service_serves_on(stack, bundle):
    # a RunStart far over the store's limits: INVALID_ARGUMENT at once, in a message that fits the
    # HTTP/2 trailers (before, a long error made Python clients fail on "metadata size exceeds limit")
    c = MonitorClient(stack.target)
    layers = [LayerSpec(f"layer{i}", 4, "dense") for i in range(10_000)]
    t0 = time.monotonic()
    with pytest.raises(cm.CmError) as e:
        c.start_run(RunSpec("py-wide", "client-test", "standard", bundle.id, layers, {}))
    assert time.monotonic() - t0 < 5
    assert e.value.code == "INVALID_ARGUMENT" and "declares 10000 layers; at most 4096" in str(e.value)
    assert len(str(e.value)) < 600
    c.close()
    # the service serves the next run
    c2 = MonitorClient(stack.target)
    c2.start_run(spec("py-after-wide", bundle.id))
    g = np.random.default_rng(1)
    assert c2.send_checkpoint(0, [LayerActivations("d", g.standard_normal((PROBE_IMAGES, 6)).astype(np.float32))])
    assert c2.close().acknowledged_checkpoints == 1


def test_the_same_run_id_from_a_second_client_is_refused_with_already_exists(stack, bundle):
    first = MonitorClient(stack.target)
    first.start_run(spec("py-twice", bundle.id))
    second = MonitorClient(stack.target)
    with pytest.raises(cm.CmError) as e:
        second.start_run(spec("py-twice", bundle.id))
    assert e.value.code == "ALREADY_EXISTS" and "run py-twice already exists" in str(e.value)
    second.close()
    g = np.random.default_rng(2)
    assert first.send_checkpoint(0, [LayerActivations("d", g.standard_normal((PROBE_IMAGES, 6)).astype(np.float32))])
    assert first.close().acknowledged_checkpoints == 1


def test_a_rejected_checkpoint_is_blamed_alone_and_the_others_go_on(stack, bundle):
    c = MonitorClient(stack.target)
    c.start_run(spec("py-rejected", bundle.id))
    g = np.random.default_rng(0)
    assert c.send_checkpoint(0, [LayerActivations("d", g.standard_normal((PROBE_IMAGES, 6)).astype(np.float32))])
    # wrong first dimension: the service ends the stream with INVALID_ARGUMENT and cm-step: 1
    assert c.send_checkpoint(1, [LayerActivations("d", np.zeros((PROBE_IMAGES - 1, 6), np.float32))])
    assert c.send_checkpoint(2, [LayerActivations("d", g.standard_normal((PROBE_IMAGES, 6)).astype(np.float32))])
    stats = c.close()
    assert stats.acknowledged_checkpoints == 2 and stats.rejected_checkpoints == 1, stats.as_dict()
    assert len(stats.errors) == 1 and "INVALID_ARGUMENT" in stats.errors[0] and "first dimension" in stats.errors[0]
    counts = wait_rows(stack.query, "py-rejected", 2 * 6)
    assert counts["final"] == 12 and counts["distinct"] == 12
    steps = stack.query("SELECT DISTINCT step FROM neuron_labels WHERE run_id = 'py-rejected' ORDER BY step")
    assert [int(r["step"]) for r in steps] == [0, 2]


def _child_uses_parent_watcher(w, q):
    t0 = time.monotonic()
    w.step(0, loss=1.0)  # a no-op in a forked child
    stats = w.close()
    try:
        w.client.send_checkpoint(5, [])
        q.put(("sent", time.monotonic() - t0))
    except cm.CmError as e:
        q.put((e.code, stats.probes, time.monotonic() - t0))


def test_a_forked_child_never_uses_the_parents_channel(stack, bundle):
    model = SmallCnn()
    w = cm.watch(model, layers=["head"], probe=bundle.dir, target=stack.target, run_id="py-fork", every=1)
    w.step(0, loss=1.0)  # the channel exists now
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_uses_parent_watcher, args=(w, q))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    code, probes, _ = q.get(timeout=5)
    assert code == "INVALID_ARGUMENT" and probes == 0
    w.step(1, loss=0.5)  # the parent goes on
    stats = w.close()
    assert stats.client.acknowledged_checkpoints == 2 and stats.probes == 2, stats.as_dict()


def test_a_script_that_forgets_close_still_delivers_at_exit(stack, bundle):
    import subprocess
    import sys

    from conftest import HERE, PACKAGE
    from test_watch_e2e import run_status

    script = (
        f"import sys; sys.path[:0] = [{PACKAGE!r}, {HERE!r}]\n"
        "import concept_monitor as cm\n"
        "from training import SmallCnn\n"
        f"w = cm.watch(SmallCnn(), layers=['head'], probe={bundle.dir!r}, target={stack.target!r}, "
        "run_id='py-atexit', every=1)\n"
        "for step in range(3):\n"
        "    w.step(step, loss=1.0)\n"
        "print('exiting without close')\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "exiting without close" in res.stdout, res.stderr
    counts = wait_rows(stack.query, "py-atexit", 3 * 5)
    assert counts["final"] == 15 and counts["distinct"] == 15
    # the run was ended (RunEnd sent by the exit hook), not left running
    assert run_status(stack.query, "py-atexit") == ["completed"]
