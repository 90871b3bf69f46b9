"""The probe pass of watch(): hooks, eval mode, pooling, tokens (no server needed: the run starts
at the first step(), probe() alone sends nothing)."""

import numpy as np
import pytest
import torch
import torch.nn as nn

import concept_monitor as cm
from conftest import PROBE_IMAGES
from training import SmallCnn

NOWHERE = "127.0.0.1:9"  # nothing listens; probe() never connects


class TinyVit(nn.Module):
    """Patch embedding + one transformer block: block output is [B, tokens, C] with a class token."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 12, 8, stride=8)
        self.cls = nn.Parameter(torch.randn(1, 1, 12))
        self.block = nn.TransformerEncoderLayer(12, 2, 24, batch_first=True, dropout=0.0)
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], dim=1)
        return self.head(self.block(t)[:, 0])


def test_conv_blocks_pooled_on_the_client_and_logits_as_they_are(bundle):
    torch.manual_seed(0)
    model = SmallCnn()
    w = cm.watch(model, layers=["block1", model.block2, "head"], probe=bundle.dir, target=NOWHERE)
    model.train()
    acts = w.probe()
    assert model.training, "train mode restored after the probe pass"
    assert [(a.layer, a.data.shape) for a in acts] == [
        ("block1", (PROBE_IMAGES, 8)),
        ("block2", (PROBE_IMAGES, 16)),
        ("head", (PROBE_IMAGES, 5)),
    ]
    # the same numbers as running the model by hand in eval mode on /255 NCHW inputs
    model.eval()
    x = torch.from_numpy(w.bundle.images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        b1 = model.block1(x)
        logits = model(x)
    np.testing.assert_allclose(acts[0].data, b1.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts[2].data, logits.numpy(), rtol=1e-5, atol=1e-6)
    assert w.close().client.acknowledged_checkpoints == 0


def test_raw_nhwc_for_the_service_to_pool_and_a_user_transform(bundle):
    model = SmallCnn()
    seen = []

    def normalise(x):
        seen.append((x.dtype, float(x.min()), float(x.max())))
        return (x - 0.5) / 0.25

    w = cm.watch(model, layers=["block2"], probe=bundle.dir, target=NOWHERE, pool_on="service", pooling="max",
                 transform=normalise, batch_size=50)
    (a,) = w.probe()
    assert a.data.shape == (PROBE_IMAGES, 8, 8, 16) and a.pooling == "max"
    assert len(seen) == 3 and all(d == torch.float32 and lo >= 0 and hi <= 1 for d, lo, hi in seen)
    w.close()


@pytest.mark.parametrize("tokens", ["cls", "mean"])
def test_transformer_tokens_pooled_by_class_token_or_mean(bundle, tokens):
    torch.manual_seed(0)
    model = TinyVit()
    w = cm.watch(model, layers=["block"], probe=bundle.dir, target=NOWHERE, tokens=tokens)
    (a,) = w.probe()
    model.eval()
    x = torch.from_numpy(w.bundle.images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        t = model.patch(x).flatten(2).transpose(1, 2)
        out = model.block(torch.cat([model.cls.expand(len(t), -1, -1), t], dim=1))
    want = out[:, 0] if tokens == "cls" else out.mean(dim=1)
    assert a.data.shape == (PROBE_IMAGES, 12)
    np.testing.assert_allclose(a.data, want.numpy(), rtol=1e-4, atol=1e-5)
    w.close()


def test_default_layers_and_clear_errors(bundle):
    model = SmallCnn()
    w = cm.watch(model, probe=bundle.dir, target=NOWHERE)
    assert [n for n, _ in w._layers] == ["block1.0", "block2.0", "head"]
    w.close()
    with pytest.raises(cm.CmError, match="no module named 'layer9'") as e:
        cm.watch(model, layers=["layer9"], probe=bundle.dir, target=NOWHERE)
    assert "block1" in (e.value.hint or "")
    with pytest.raises(cm.CmError, match="not a submodule"):
        cm.watch(model, layers=[nn.Linear(2, 2)], probe=bundle.dir, target=NOWHERE)
    with pytest.raises(cm.CmError, match="policy must be one of"):
        cm.watch(model, probe=bundle.dir, target=NOWHERE, policy="sometimes")
    with pytest.raises(cm.CmError, match="every must be a positive integer"):
        cm.watch(model, probe=bundle.dir, target=NOWHERE, every=0)


def test_nan_activations_are_refused_with_the_layer_named(bundle):
    model = SmallCnn()
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    w = cm.watch(model, layers=["head"], probe=bundle.dir, target=NOWHERE)
    with pytest.raises(cm.CmError, match="layer head: activations contain NaN"):
        w.probe()
    w.close()


def test_other_ranks_get_a_watcher_that_does_nothing(bundle, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    w = cm.watch(SmallCnn(), probe=bundle.dir, target=NOWHERE)
    assert type(w).__name__ == "_NoopWatcher" and w.rank == 1
    w.step(0, loss=1.0)
    assert w.close().probes == 0


def test_float16_overflow_is_refused_before_sending(bundle):
    model = SmallCnn()
    with torch.no_grad():
        model.head.bias.fill_(1e6)
    w = cm.watch(model, layers=["head"], probe=bundle.dir, target=NOWHERE, dtype="float16")
    with pytest.raises(cm.CmError, match="overflow float16"):
        w.probe()
    w.close()


def test_a_probe_set_too_large_to_cache_is_converted_batch_by_batch(bundle, monkeypatch):
    import concept_monitor.watcher as watcher_module

    model = SmallCnn()
    w = cm.watch(model, layers=["head"], probe=bundle.dir, target=NOWHERE, batch_size=50)
    (cached,) = w.probe()
    monkeypatch.setattr(watcher_module, "CACHE_BYTES", 1024)
    w2 = cm.watch(model, layers=["head"], probe=bundle.dir, target=NOWHERE, batch_size=50)
    (streamed,) = w2.probe()
    assert w2._inputs is None and w._inputs is not None
    np.testing.assert_array_equal(cached.data, streamed.data)
    w.close(), w2.close()
