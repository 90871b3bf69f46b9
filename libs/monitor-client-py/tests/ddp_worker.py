"""One rank of the DistributedDataParallel test (gloo, CPU): trains with watch() on a DDP model
and writes what its watcher did to OUT/rank<r>.json.

    python ddp_worker.py RANK WORLD INIT_PORT TARGET BUNDLE_DIR RUN_ID OUT
"""

import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import concept_monitor as cm  # noqa: E402
from training import LAYERS, SmallCnn  # noqa: E402


def main() -> None:
    rank, world, port, target, bundle_dir, run_id, out = sys.argv[1:8]
    rank, world = int(rank), int(world)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(SmallCnn())
    w = cm.watch(model, layers=[n for n, _ in LAYERS], probe=bundle_dir, target=target, run_id=run_id, every=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(rank)
    for step in range(6):
        x = torch.rand(8, 3, 32, 32, generator=g)
        y = torch.randint(0, 5, (8,), generator=g)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(step, loss=loss.item())
    stats = w.close()
    # the replicas stayed in step: DDP's all-reduce ran on every step
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(
            {
                "watcher": type(w).__name__,
                "probes": stats.probes,
                "acknowledged": stats.client.acknowledged_checkpoints,
                "sent_bytes": stats.client.sent_bytes,
                "replicas_equal": all(torch.equal(gathered[0], t) for t in gathered),
            },
            f,
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
