"""A small CNN and a few training steps, as a user's loop would call watch()."""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn as nn

# (module name, neurons): the layers the tests monitor
LAYERS = [("block1", 8), ("block2", 16), ("head", 5)]
NEURONS = sum(w for _, w in LAYERS)


class SmallCnn(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.block2(self.block1(x))).flatten(1))


def dataset(images: np.ndarray, seed: int = 0) -> torch.utils.data.TensorDataset:
    g = np.random.default_rng(seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    y = torch.from_numpy(g.integers(0, 5, size=len(images))).long()
    return torch.utils.data.TensorDataset(x, y)


def train(
    model: nn.Module,
    watcher: Any,
    images: np.ndarray,
    steps: int,
    num_workers: int = 0,
    on_step: Optional[Callable[[int], None]] = None,
) -> None:
    """`steps` SGD steps of batch 16 over `images`, watcher.step() after each."""
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(
        dataset(images), batch_size=16, shuffle=True, num_workers=num_workers, drop_last=True
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    step = 0
    while step < steps:
        for x, y in loader:
            if step >= steps:
                break
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert model.training, "watch() must restore train mode"
            watcher.step(step, loss=loss, lr=0.05)
            if on_step is not None:
                on_step(step)
            step += 1
