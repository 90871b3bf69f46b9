"""Train a small CNN with PyTorch on the synthetic concept world, monitored with watch() against
`cm serve`: every 100 steps each neuron of the three conv blocks and the logits gets a concept.

    npx cm probe make --root .cm/bundles --splits-out /tmp/world     # probe bundle + .npy splits
    npx cm serve &                                                   # gRPC on 127.0.0.1:50051
    /usr/bin/python3 tools/examples/pytorch_watch.py --splits /tmp/world --probe .cm/bundles/<id>
    # after stopping cm serve:
    npx cm sql "SELECT layer, step, interpretable_fraction FROM layer_metrics FINAL ORDER BY layer, step"

The splits are what `cm probe make --splits-out` writes: train_images.npy / test_images.npy (uint8
N x 32 x 32 x 3), train_labels.npy / test_labels.npy (int64) and classes.json.
"""

import argparse
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "libs", "monitor-client-py"))
import concept_monitor as cm  # noqa: E402


def small_cnn(classes: int) -> nn.Module:
    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(
        OrderedDict(
            block1=block(3, 16),
            block2=block(16, 32),
            block3=block(32, 64),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            logits=nn.Linear(64, classes),
        )
    )


def tensors(splits: str, part: str):
    x = torch.from_numpy(np.load(os.path.join(splits, f"{part}_images.npy"))).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(np.load(os.path.join(splits, f"{part}_labels.npy"))).long()
    return torch.utils.data.TensorDataset(x, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", required=True, help="folder written by cm probe make --splits-out")
    ap.add_argument("--probe", required=True, help="probe bundle folder (the one cm serve finds in its bundle dir)")
    ap.add_argument("--target", default=os.environ.get("CM_GRPC_TARGET", "127.0.0.1:50051"))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--run-id", default=None)
    ap.add_argument("--policy", default="wait", choices=["wait", "drop", "spool"])
    args = ap.parse_args()

    with open(os.path.join(args.splits, "classes.json")) as f:
        classes = json.load(f)
    train, test = tensors(args.splits, "train"), tensors(args.splits, "test")
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True, drop_last=True)
    torch.manual_seed(0)
    model = small_cnn(len(classes))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)

    watcher = cm.watch(model, layers=["block1", "block2", "block3", "logits"], probe=args.probe, target=args.target,
                       run_id=args.run_id, every=args.every, tags={"example": "pytorch_watch"}, policy=args.policy)
    step = 0
    while step < args.steps:
        for x, y in loader:
            if step >= args.steps:
                break
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            accuracy = (logits.argmax(1) == y).float().mean()
            watcher.step(step, loss=loss, accuracy=accuracy)
            if step % args.every == 0:
                print(f"step {step}: loss {loss.item():.3f}, train accuracy {accuracy.item():.2f}", flush=True)
            step += 1
    stats = watcher.close()

    model.eval()
    with torch.no_grad():
        x, y = test.tensors
        test_accuracy = (model(x).argmax(1) == y).float().mean().item()
    print(f"test accuracy {test_accuracy:.2f} over {len(classes)} classes")
    print(
        f"run {watcher.run_id}: {stats.client.acknowledged_checkpoints} checkpoints acknowledged, "
        f"{stats.dropped_checkpoints} dropped; monitoring took {stats.step_seconds:.1f} s inside step()"
    )
    last = watcher.client.result((args.steps - 1) // args.every * args.every)
    for layer in last.layers if last else []:
        top = ", ".join(f"{c} ({n})" for c, n in layer["top_concepts"][:3])
        print(f"  {layer['layer']}: {100 * layer['interpretable_fraction']:.0f} % interpretable; top concepts {top}")


if __name__ == "__main__":
    main()
