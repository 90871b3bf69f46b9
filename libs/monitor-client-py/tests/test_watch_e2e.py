"""watch() in a torch training loop against real servers: `cm serve` (embedded chDB store) and the
real stack (concept service -> nats-server JetStream -> recorder -> clickhouse-server). Every
neuron of every checkpoint must be in the store exactly once, also when the service is killed and
restarted mid-run ("wait", "spool"); with the service down and "drop", training finishes and the
drops are counted."""

import os
import threading
import time

import pytest

import concept_monitor as cm
from conftest import free_port, wait_rows
from training import LAYERS, NEURONS, SmallCnn, train

LAYER_NAMES = [n for n, _ in LAYERS]


def run_status(query, run_id, want="completed", timeout=30):
    """The run's status, once it is `want` or after `timeout` (the recorder writes asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = query(f"SELECT status FROM runs FINAL WHERE run_id = '{run_id}'")
        if (rows and rows[0]["status"] == want) or time.monotonic() > deadline:
            return [r["status"] for r in rows]
        time.sleep(0.3)


def expect_every_neuron_once(query, run_id, steps, exact_raw=True):
    expected = len(steps) * NEURONS
    counts = wait_rows(query, run_id, expected)
    assert counts["final"] == expected and counts["distinct"] == expected, counts
    if exact_raw:
        assert counts["raw"] == expected, counts
    per = query(
        f"SELECT layer, step, count() AS n, uniqExact(neuron) AS u, max(neuron) AS top FROM neuron_labels FINAL "
        f"WHERE run_id = '{run_id}' GROUP BY layer, step ORDER BY layer, step"
    )
    got = sorted((r["layer"], int(r["step"]), int(r["n"]), int(r["u"]), int(r["top"])) for r in per)
    assert got == sorted((name, s, w, w, w - 1) for name, w in LAYERS for s in steps)


def test_cm_serve_every_neuron_of_every_checkpoint_once_with_dataloader_workers(serve, bundle):
    s = serve("basic")
    model = SmallCnn()
    w = cm.watch(model, layers=LAYER_NAMES, probe=bundle.dir, target=s.target, run_id="py-serve", every=3,
                 tags={"case": "serve"})
    images = cm.load_bundle(bundle.dir).images
    # worker processes fork at every epoch, the later ones after the sender's channel exists
    train(model, w, images, steps=12, num_workers=2)
    stats = w.close()
    assert stats.probes == 4
    assert stats.client.acknowledged_checkpoints == 4 and stats.dropped_checkpoints == 0, stats.as_dict()
    s.stop()
    expect_every_neuron_once(s.query, "py-serve", [0, 3, 6, 9])
    runs = s.query("SELECT status, model, paradigm, bundle_id FROM runs FINAL WHERE run_id = 'py-serve'")
    assert runs == [{"status": "completed", "model": "SmallCnn", "paradigm": "standard", "bundle_id": bundle.id}]
    cps = s.query("SELECT step, metrics.name AS names FROM checkpoints FINAL WHERE run_id = 'py-serve' ORDER BY step")
    assert [int(r["step"]) for r in cps] == [0, 3, 6, 9] and all(sorted(r["names"]) == ["loss", "lr"] for r in cps)


def test_stack_every_neuron_of_every_checkpoint_once(stack, bundle):
    model = SmallCnn()
    w = cm.watch(model, layers=[model.block1, "block2", "head"], probe=bundle.dir, target=stack.target,
                 run_id="py-stack", every=2, dtype="float16", pool_on="service")
    train(model, w, cm.load_bundle(bundle.dir).images, steps=6)
    stats = w.close()
    assert stats.client.acknowledged_checkpoints == 3 and stats.dropped_checkpoints == 0, stats.as_dict()
    expect_every_neuron_once(stack.query, "py-stack", [0, 2, 4])
    assert run_status(stack.query, "py-stack") == ["completed"]


def outage_run(stack, bundle, tmp_path, policy, run_id):
    """Kill the concept service at step 2, restart it in the background at step 6 (training goes on
    meanwhile), train to step 9 with a checkpoint every step."""
    model = SmallCnn()
    extra = {"spool_dir": str(tmp_path / "spool"), "max_buffered_bytes": 64 * 1024} if policy == "spool" else {}
    w = cm.watch(model, layers=LAYER_NAMES, probe=bundle.dir, target=stack.target, run_id=run_id, every=1,
                 policy=policy, reconnect_max_s=0.5, **extra)
    restart = []
    restarted_at = []
    spooled_dir_had_files = []

    def on_step(step):
        if step == 2:
            stack.service.kill()
        if step == 6:

            def restart_service():
                stack.start_service()
                restarted_at.append(time.monotonic())

            t = threading.Thread(target=restart_service)
            t.start()
            restart.append(t)
        if policy == "spool" and step == 5 and os.path.isdir(tmp_path / "spool"):
            spooled_dir_had_files.append(len([f for f in os.listdir(tmp_path / "spool") if f.endswith(".ckpt")]))

    t0 = time.monotonic()
    train(model, w, cm.load_bundle(bundle.dir).images, steps=10, on_step=on_step)
    trained_at = time.monotonic()
    for t in restart:
        t.join()
    stats = w.close(timeout_s=120)
    # training did not wait for the service: it finished while the service was still down
    assert restarted_at and trained_at < restarted_at[0], (trained_at - t0, restarted_at[0] - t0)
    return stats, spooled_dir_had_files


@pytest.mark.parametrize("policy", ["wait", "spool"])
def test_service_killed_and_restarted_mid_run_loses_nothing(stack, bundle, tmp_path, policy):
    run_id = f"py-outage-{policy}"
    stats, spooled = outage_run(stack, bundle, tmp_path, policy, run_id)
    c = stats.client
    print(f"\n{policy}: {c.as_dict()}")
    assert c.acknowledged_checkpoints == 10 and c.dropped_checkpoints == 0 and c.errors == [], c.as_dict()
    assert c.reconnects >= 1
    if policy == "spool":
        assert c.spooled_checkpoints >= 1 and spooled and spooled[0] >= 1, (c.as_dict(), spooled)
        assert not os.listdir(tmp_path / "spool"), "the spool is empty once everything went out"
    expect_every_neuron_once(stack.query, run_id, list(range(10)), exact_raw=False)
    assert run_status(stack.query, run_id) == ["completed"]


def test_service_down_with_drop_training_finishes_and_reports_the_drops(bundle):
    nowhere = f"127.0.0.1:{free_port()}"
    model = SmallCnn()
    w = cm.watch(model, layers=LAYER_NAMES, probe=bundle.dir, target=nowhere, run_id="py-drop", every=2,
                 policy="drop", start_timeout_s=0.5, drop_after_s=0.5)
    t0 = time.monotonic()
    train(model, w, cm.load_bundle(bundle.dir).images, steps=8)
    train_s = time.monotonic() - t0
    stats = w.close(timeout_s=3)
    assert stats.probes == 4
    assert stats.client.acknowledged_checkpoints == 0 and stats.dropped_checkpoints == 4, stats.as_dict()
    # training waited only for the probe passes and the one bounded start attempt
    assert train_s < 0.5 + 10 and stats.step_seconds < 0.5 + 5, (train_s, stats.step_seconds)


def test_cm_serve_learned_concepts_from_random_inits_sent_once_per_architecture(serve, bundle):
    """The learned-concept baseline from the Python SDK: watch() sends `random_inits` freshly
    initialised copies of the model (deepcopy + reset_parameters) when the service has none for the
    architecture; every layer_metrics row of the run then has learned_fraction (the association
    figure interpretable_fraction beside it); a second run of the architecture sends none."""
    s = serve("learned")
    model = SmallCnn()
    w = cm.watch(model, layers=LAYER_NAMES, probe=bundle.dir, target=s.target, run_id="py-learned-1", every=3,
                 random_inits=2)
    images = cm.load_bundle(bundle.dir).images
    train(model, w, images, steps=6)
    w.close()
    w2 = cm.watch(SmallCnn(), layers=LAYER_NAMES, probe=bundle.dir, target=s.target, run_id="py-learned-2", every=3,
                  random_inits=2)
    w2.step(0)  # starts the run
    assert w2.client.baseline_wanted() is False
    w2.close()
    s.stop()
    rows = s.query(
        "SELECT run_id, layer, step, learned_fraction, interpretable_fraction FROM layer_metrics FINAL "
        "WHERE run_id LIKE 'py-learned-%' ORDER BY run_id, layer, step"
    )
    assert len(rows) == len(LAYER_NAMES) * (2 + 1), rows  # steps 0 and 3 of the first run, 0 of the second
    for r in rows:
        assert r["learned_fraction"] is not None, r
        assert 0 <= float(r["learned_fraction"]) <= float(r["interpretable_fraction"]) + 1e-9, r
