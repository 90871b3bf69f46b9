"""Benchmark of the Python SDK (libs/monitor-client-py): what watch() costs a PyTorch training loop,
and how fast Python sends activations over loopback.

    npm run bench:python -- [steps=400] [batch=128] [checkpoints=6]
    (= /usr/bin/python3 tools/bench/python_watch.py ...)

The receiving side is tools/bench/stream-server.ts in its own process: the concept server with
real pooling and dissection (one worker) and a sink that discards records; it reports, per
checkpoint, how long it took from the first chunk to CheckpointEnd.

1. Overhead: a small CNN (3 conv blocks, the logits) trains on 32x32 images with SGD; watch()
   monitors the three blocks and the logits at every=100 on a 2,000-image probe bundle (cm probe
   make). Overhead = time inside step() over the loop's total time (goal <= 5 %).
2. Throughput: MonitorClient sends raw conv checkpoints [2000, 8, 8, 128] float32 (65.5 MB each);
   the rate is bytes over the service's receive time (goal >= 150 MB/s), as npm run bench:stream
   measures the TypeScript client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "libs", "monitor-client-py"))

import numpy as np  # noqa: E402

import concept_monitor as cm  # noqa: E402
from concept_monitor import LayerActivations, LayerSpec, MonitorClient, RunSpec  # noqa: E402

PROBE_IMAGES = 2000


class StreamServer:
    """tools/bench/stream-server.ts as a child process; collects its per-checkpoint lines."""

    def __init__(self, d: int) -> None:
        self.p = subprocess.Popen(
            ["node", "--import", "tsx", os.path.join(ROOT, "tools", "bench", "stream-server.ts"), str(d)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.infos: list = []
        self.port = None
        ready = threading.Event()

        def read() -> None:
            assert self.p.stdout is not None
            for line in self.p.stdout:
                if line.startswith("port "):
                    self.port = int(line[5:])
                    ready.set()
                elif line.startswith("{"):
                    self.infos.append(json.loads(line))
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60) or self.port is None:
            raise RuntimeError("stream-server.ts did not report its port")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.p.terminate()
        self.p.wait(20)


def overhead(steps: int, batch: int) -> dict:
    import torch
    import torch.nn as nn

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="cm-bench-py-") as tmp:
        out = subprocess.run(
            ["node", os.path.join(ROOT, "apps", "cli", "bin", "cm.js"), "probe", "make", "--images", str(PROBE_IMAGES),
             "--seed", "7", "--out", os.path.join(tmp, "bundle")],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
        bundle = cm.load_bundle(out.stdout.strip().split("\t")[1])
        server = StreamServer(PROBE_IMAGES)
        try:
            torch.manual_seed(0)

            def block(cin: int, cout: int) -> nn.Module:
                return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

            model = nn.Sequential()
            model.add_module("block1", block(3, 32))
            model.add_module("block2", block(32, 64))
            model.add_module("block3", block(64, 128))
            model.add_module("pool", nn.AdaptiveAvgPool2d(1))
            model.add_module("flat", nn.Flatten())
            model.add_module("logits", nn.Linear(128, 8))
            x_all = torch.from_numpy(bundle.images).permute(0, 3, 1, 2).float() / 255
            y_all = torch.randint(0, 8, (len(x_all),))
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            watcher = cm.watch(model, layers=["block1", "block2", "block3", "logits"], probe=bundle,
                               target=server.target, run_id="bench-python", every=100)
            model.train()
            probe_times: list = []
            t0 = time.perf_counter()
            for step in range(steps):
                idx = torch.randint(0, len(x_all), (batch,))
                loss = nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                ts = time.perf_counter()
                watcher.step(step, loss=loss.item())
                if step % 100 == 0:
                    probe_times.append(time.perf_counter() - ts)
            total = time.perf_counter() - t0
            stats = watcher.close()
        finally:
            server.stop()
    return {
        "steps": steps,
        "batch": batch,
        "probes": stats.probes,
        "total_s": total,
        "step_s": stats.step_seconds,
        "overhead": stats.step_seconds / total,
        "acknowledged": stats.client.acknowledged_checkpoints,
        "probe_times": probe_times,
    }


def throughput(checkpoints: int, dtype: str = "float32") -> dict:
    d, hw, c = PROBE_IMAGES, 8, 128
    server = StreamServer(d)
    try:
        client = MonitorClient(server.target, dtype=dtype)
        client.start_run(RunSpec("bench-python-stream", "bench", "standard", "random", [LayerSpec("conv", c, "conv")], {}))
        data = ((np.arange(d * hw * hw * c, dtype=np.int64) * 2654435761) % 1000 / 1000).astype(np.float32)
        data = data.reshape(d, hw, hw, c)
        t0 = time.perf_counter()
        for step in range(checkpoints):
            client.send_checkpoint(step, [LayerActivations("conv", data)], {"loss": 1.0})
        enqueued = time.perf_counter() - t0
        stats = client.close(timeout_s=300)
        wall = time.perf_counter() - t0
        time.sleep(0.2)
    finally:
        server.stop()
    nbytes = data.size * (2 if dtype == "float16" else 4)
    rates = sorted(i["bytes"] / 1e6 / (i["receiveMs"] / 1000) for i in server.infos if i["receiveMs"] > 0)
    return {
        "checkpoints": checkpoints,
        "mb_each": nbytes / 1e6,
        "acknowledged": stats.acknowledged_checkpoints,
        "median_mb_s": rates[len(rates) // 2] if rates else float("nan"),
        "best_mb_s": rates[-1] if rates else float("nan"),
        "end_to_end_mb_s": nbytes * checkpoints / 1e6 / wall,
        "enqueue_s": enqueued,
    }


def main() -> None:
    args = [int(a) for a in sys.argv[1:]]
    steps, batch, checkpoints = (args + [400, 128, 6][len(args):])[:3]
    o = overhead(steps, batch)
    print(
        f"overhead: {o['steps']} steps of batch {o['batch']}, every=100, {PROBE_IMAGES}-image probe set, "
        f"{o['probes']} probes ({o['acknowledged']} acknowledged): {o['step_s']:.2f} s inside step() of "
        f"{o['total_s']:.2f} s total = {100 * o['overhead']:.1f} % (goal <= 5 %); "
        f"probes took {', '.join(f'{t:.2f}' for t in o['probe_times'])} s (the first includes the run start), "
        f"{(o['total_s'] - o['step_s']) / o['steps'] * 1000:.0f} ms per training step; load average {os.getloadavg()[0]:.1f}"
    )
    t = throughput(checkpoints)
    print(
        f"throughput: {t['checkpoints']} raw checkpoints of [{PROBE_IMAGES}, 8, 8, 128] float32 = {t['mb_each']:.1f} MB each "
        f"({t['acknowledged']} acknowledged): into the service median {t['median_mb_s']:.0f} MB/s, best "
        f"{t['best_mb_s']:.0f} MB/s (goal >= 150 MB/s); end to end incl. pooling, dissection and ack "
        f"{t['end_to_end_mb_s']:.0f} MB/s"
    )


if __name__ == "__main__":
    main()
