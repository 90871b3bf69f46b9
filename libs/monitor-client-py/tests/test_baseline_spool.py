"""The learned-concept baseline under policy spool, on the real stack (concept service -> nats-server
JetStream -> recorder -> clickhouse-server): the concept service is down when the run starts and
comes back during it. watch() spools its random initialisations ahead of the checkpoints and they
go out first, so every checkpoint of the run has its learned figure in ClickHouse. The model holds
a custom module with its own parameters and no reset_parameters(): those are re-drawn, and the one
that cannot be (a scalar) is named in a warning."""

import logging
import os
import threading
import time

import torch
import torch.nn as nn

import concept_monitor as cm
from training import train

STEPS = 6  # checkpoints at 0, 2, 4


class Gate(nn.Module):
    """A custom layer with its own parameters and no reset_parameters()."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) * 0.1)
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.temperature = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.weight.t() + self.bias) / self.temperature


class GatedCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.gate = Gate(8, 6)
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.gate(self.pool(self.block1(x)).flatten(1))))


def test_service_down_at_start_the_spooled_baseline_goes_first_and_every_checkpoint_has_its_learned_figure(
    stack, bundle, tmp_path, caplog
):
    stack.service.kill()
    restarted = []

    def on_step(step):
        if step == 3:  # checkpoints 0 and 2 (and the inits) are on disk by now
            files = sorted(f for f in os.listdir(tmp_path / "spool") if f.endswith(".ckpt"))
            restarted.append([int(f[13:-5]) for f in files])
            t = threading.Thread(target=stack.start_service)
            t.start()
            restarted.append(t)

    model = GatedCnn()
    caplog.set_level(logging.WARNING, logger="concept_monitor")
    try:
        w = cm.watch(model, layers=["block1", "gate"], probe=bundle.dir, target=stack.target,
                     run_id="py-baseline-spool", every=2, policy="spool", random_inits=2,
                     spool_dir=str(tmp_path / "spool"), start_timeout_s=0.5, reconnect_max_s=0.5)
        train(model, w, cm.load_bundle(bundle.dir).images, steps=STEPS, on_step=on_step)
    finally:
        for t in restarted:
            if isinstance(t, threading.Thread):
                t.join()
        if stack.service is None or not stack.service.alive():
            stack.start_service()
    stats = w.close(timeout_s=120)
    c = stats.client
    # on disk while the service was down: the 2 random inits (steps -2, -3) first, then checkpoints 0, 2
    assert restarted and restarted[0] == [-2, -3, 0, 2], restarted
    assert c.spooled_baselines == 2 and c.skipped_baselines == 0, c.as_dict()
    assert c.acknowledged_checkpoints == 3 and c.dropped_checkpoints == 0, c.as_dict()
    assert not os.listdir(tmp_path / "spool")
    # the custom module's scalar could not be re-initialised: named in the warning and on the watcher
    assert w.baseline_not_reset == ["gate.temperature"]
    warned = [r.getMessage() for r in caplog.records if "random-init baseline" in r.getMessage()]
    assert len(warned) == 1 and "gate.temperature" in warned[0], warned

    deadline = time.monotonic() + 60
    while True:
        rows = stack.query(
            "SELECT layer, step, learned_fraction FROM layer_metrics FINAL "
            "WHERE run_id = 'py-baseline-spool' ORDER BY layer, step"
        )
        if len(rows) >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [(r["layer"], int(r["step"])) for r in rows] == [(l, s) for l in ("block1", "gate") for s in (0, 2, 4)]
    for r in rows:
        assert r["learned_fraction"] is not None, r  # the baseline came before step 0
        assert 0 <= float(r["learned_fraction"]) <= 1, r
