"""Freshly initialised copies of a PyTorch model for the learned-concept baseline (docs/dissect.md,
"Learned concepts"): the same architecture with new weights, drawn as torch would draw them.

`copy.deepcopy` keeps the trained weights; every module is then re-initialised:
  - a module with `reset_parameters()` (nn.Linear, nn.Conv2d, nn.LayerNorm, nn.BatchNorm, or one's
    own) resets itself. When that method is torch's, inherited by a module defined elsewhere (an
    nn.Linear subclass that adds a parameter), a parameter of its own the reset left exactly as it
    was is treated as not reset;
  - every other parameter gets torch's default for its shape, the one nn.Linear / nn.ConvNd use:
    a >= 2-D weight kaiming_uniform_(a=sqrt(5)) (uniform in +-1/sqrt(fan_in) up to a factor), a
    1-D parameter beside such a weight in the same module (its bias) uniform in +-1/sqrt(fan_in)
    of that weight.
What has no default (a 0-D scalar such as a learned temperature, a 1-D parameter with no weight
beside it) keeps its trained value and is named in the result: the baseline is then only partly
random, and the caller says so.
torch is imported here only (the package works without it).
"""

from __future__ import annotations

import copy
import math
from typing import Any, List, Tuple


def _inherits_torch_reset(m: Any) -> bool:
    """A module defined outside torch.nn whose reset_parameters() is torch.nn's (knows only the base's parameters)."""
    method = getattr(type(m), "reset_parameters", None)
    return not type(m).__module__.startswith("torch.nn") and getattr(method, "__module__", "").startswith("torch.nn")


def fresh_copy(module: Any) -> Tuple[Any, List[str]]:
    """A deep copy of `module` with every parameter re-initialised (see the module doc), and the
    qualified names of the parameters that could not be (left as trained)."""
    import torch
    from torch.nn import init

    fresh = copy.deepcopy(module)
    not_reset: List[str] = []
    with torch.no_grad():
        for prefix, m in fresh.named_modules():
            own = list(m.named_parameters(recurse=False))
            if not own:
                # a reset_parameters() of a container may still reset its children; they get theirs below
                reset = getattr(m, "reset_parameters", None)
                if callable(reset):
                    reset()
                continue
            pending = own
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                before = {name: p.detach().clone() for name, p in own}
                reset()
                if not _inherits_torch_reset(m):
                    continue
                # torch's reset covers what it changed; the subclass's own parameters get the defaults below
                pending = [(name, p) for name, p in own if torch.equal(p, before[name])]
            weights = [p for _, p in own if p.dim() >= 2]
            for name, p in pending:
                full = f"{prefix}.{name}" if prefix else name
                if p.dim() >= 2:
                    init.kaiming_uniform_(p, a=math.sqrt(5))
                elif p.dim() == 1 and weights:
                    fan_in, _ = init._calculate_fan_in_and_fan_out(weights[0])
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    init.uniform_(p, -bound, bound)
                else:
                    not_reset.append(full)
    return fresh, not_reset
