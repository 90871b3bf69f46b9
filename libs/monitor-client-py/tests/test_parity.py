"""The same labels both ways: one set of activations sent from Python (concept_monitor) and from
TypeScript (libs/monitor-client) through the real stack gives identical label rows."""

import json
import os
import subprocess

import numpy as np
import pytest

from concept_monitor import LayerActivations, LayerSpec, MonitorClient, RunSpec
from conftest import NODE, PROBE_IMAGES, REPO, wait_rows

LAYERS = [
    {"name": "dense_a", "kind": "dense", "pooling": "avg", "shape": (PROBE_IMAGES, 10)},
    {"name": "conv_b", "kind": "conv", "pooling": "max", "shape": (PROBE_IMAGES, 4, 4, 6)},
]
STEPS = [0, 1]
NEURONS = 10 + 6
COLUMNS = "layer, step, neuron, concept, category, score, interpretable, dead, top_concepts, top_scores, x, y"


def activations(step):
    g = np.random.default_rng(100 + step)
    return {l["name"]: g.standard_normal(l["shape"]).astype(np.float32) * (1 + step) for l in LAYERS}


@pytest.fixture(scope="module")
def npy_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("parity")
    with open(d / "layers.json", "w") as f:
        json.dump([{k: l[k] for k in ("name", "kind", "pooling")} for l in LAYERS], f)
    for step in STEPS:
        for name, arr in activations(step).items():
            np.save(d / f"step{step}-{name}.npy", arr)
    return str(d)


def send_python(target, bundle_id, run_id, npy_dir, dtype):
    c = MonitorClient(target, dtype=dtype)
    c.start_run(
        RunSpec(run_id, "parity", "standard", bundle_id,
                [LayerSpec(l["name"], l["shape"][-1], l["kind"]) for l in LAYERS], {})
    )
    for step in STEPS:
        layers = [LayerActivations(l["name"], np.load(os.path.join(npy_dir, f"step{step}-{l['name']}.npy")), l["pooling"])
                  for l in LAYERS]
        assert c.send_checkpoint(step, layers, {"loss": 1 / (step + 1)})
    stats = c.close()
    assert stats.acknowledged_checkpoints == len(STEPS) and stats.errors == []


def send_typescript(target, bundle_id, run_id, npy_dir, dtype):
    res = subprocess.run(
        [NODE, "--import", "tsx", os.path.join(os.path.dirname(__file__), "ts", "send-checkpoints.ts"),
         target, bundle_id, run_id, npy_dir, dtype],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert f"sent {len(STEPS)} checkpoints" in res.stdout


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_python_and_typescript_give_identical_label_rows(stack, bundle, npy_dir, dtype):
    py, ts = f"parity-py-{dtype}", f"parity-ts-{dtype}"
    send_python(stack.target, bundle.id, py, npy_dir, dtype)
    send_typescript(stack.target, bundle.id, ts, npy_dir, dtype)
    expected = len(STEPS) * NEURONS
    for run in (py, ts):
        assert wait_rows(stack.query, run, expected)["distinct"] == expected
    rows = {
        run: stack.query(f"SELECT {COLUMNS} FROM neuron_labels FINAL WHERE run_id = '{run}' ORDER BY layer, step, neuron")
        for run in (py, ts)
    }
    assert len(rows[py]) == expected
    assert rows[py] == rows[ts]
    # not a vacuous comparison: the labels differ between neurons
    assert len({r["concept"] for r in rows[py]}) > 3
    metrics = {
        run: stack.query(
            "SELECT layer, step, interpretable_fraction, distinct_concept_share, label_entropy "
            f"FROM layer_metrics FINAL WHERE run_id = '{run}' ORDER BY layer, step"
        )
        for run in (py, ts)
    }
    assert len(metrics[py]) == len(STEPS) * len(LAYERS) and metrics[py] == metrics[ts]
