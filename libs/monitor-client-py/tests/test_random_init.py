"""random_init.fresh_copy: the learned-concept baseline's freshly initialised copies also re-draw the
parameters of custom modules without reset_parameters(), with torch's default init for their shape
(as nn.Linear draws), and name what has no default."""

import math

import torch
import torch.nn as nn

from concept_monitor.random_init import fresh_copy


class Gate(nn.Module):
    """A custom layer holding its own parameters, with no reset_parameters()."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.temperature = nn.Parameter(torch.tensor(1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((x @ self.weight.t() + self.bias) / self.temperature)


class ScaledLinear(nn.Linear):
    """nn.Linear's reset_parameters(), which knows nothing of `scale`."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__(n_in, n_out)
        self.scale = nn.Parameter(torch.full((n_out, n_out), 7.0))


class OwnReset(nn.Module):
    """A custom module with its own reset_parameters(): trusted as it is, even when deterministic."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.full((4,), 3.0))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.gain.fill_(1.0)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.gate = Gate(256, 512)
        self.scaled = ScaledLinear(8, 6)
        self.own = OwnReset()
        self.lone = nn.Parameter(torch.full((5,), 2.0))  # a 1-D parameter with no weight beside it


def test_a_custom_modules_own_parameters_are_drawn_as_nn_linear_draws_its():
    torch.manual_seed(0)
    net = Net()
    original = {k: v.clone() for k, v in net.state_dict().items()}
    fresh, not_reset = fresh_copy(net)
    # the model itself is untouched
    assert all(torch.equal(v, original[k]) for k, v in net.state_dict().items())
    # the custom weight and bias: no longer zero, inside nn.Linear's bounds, with its spread
    bound = 1 / math.sqrt(256)  # kaiming_uniform(a=sqrt(5)) and the bias uniform: +-1/sqrt(fan_in)
    w, b = fresh.gate.weight.detach(), fresh.gate.bias.detach()
    assert w.abs().max() <= bound + 1e-7 and b.abs().max() <= bound + 1e-7
    reference = nn.Linear(256, 512)
    assert abs(float(w.std()) - float(reference.weight.std())) < 0.03 * float(reference.weight.std())
    assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.03 * bound
    assert abs(float(b.std()) - bound / math.sqrt(3)) < 0.15 * bound
    assert abs(float(w.mean())) < 0.01 * bound
    # an nn.Linear subclass's extra parameter is re-drawn too, its weight and bias by torch's reset
    assert not torch.equal(fresh.scaled.scale, net.scaled.scale)
    assert fresh.scaled.scale.abs().max() <= 1 / math.sqrt(6) + 1e-7
    assert not torch.equal(fresh.scaled.weight, net.scaled.weight)
    # built-in modules reset themselves
    assert not torch.equal(fresh.conv.weight, net.conv.weight)
    # a module's own reset_parameters() is trusted (deterministic here: back to 1)
    assert torch.equal(fresh.own.gain.detach(), torch.ones(4))
    # no default for a scalar or a lone 1-D parameter: kept, and named
    assert sorted(not_reset) == ["gate.temperature", "lone"]
    assert float(fresh.gate.temperature) == 1.5 and torch.equal(fresh.lone.detach(), torch.full((5,), 2.0))


def test_two_copies_draw_different_weights_and_a_torch_only_model_names_nothing():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    a, not_reset_a = fresh_copy(net)
    b, not_reset_b = fresh_copy(net)
    assert not_reset_a == [] and not_reset_b == []
    assert not torch.equal(a[0].weight, b[0].weight) and not torch.equal(a[4].weight, b[4].weight)
    assert a[0].weight.shape == net[0].weight.shape
