"""A DistributedDataParallel run of 2 processes (gloo, CPU) sends from rank 0 only."""

import json
import os
import subprocess
import sys

from conftest import free_port, wait_rows
from training import NEURONS

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_worker.py")


def test_ddp_two_processes_send_from_rank_0_only(stack, bundle, tmp_path):
    run_id = "py-ddp"
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, str(r), "2", str(port), stack.target, bundle.dir, run_id, str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for r in (0, 1)
    ]
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=180)[0].decode(errors="replace"))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    assert [p.returncode for p in procs] == [0, 0], outs
    ranks = [json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1)]
    assert ranks[0]["watcher"] == "Watcher" and ranks[0]["probes"] == 3 and ranks[0]["acknowledged"] == 3
    assert ranks[1] == {"watcher": "_NoopWatcher", "probes": 0, "acknowledged": 0, "sent_bytes": 0,
                        "replicas_equal": True}
    assert ranks[0]["replicas_equal"]
    expected = 3 * NEURONS
    counts = wait_rows(stack.query, run_id, expected)
    # one sender: no second copy of any row, not even before de-duplication
    assert counts == {"raw": expected, "final": expected, "distinct": expected}
