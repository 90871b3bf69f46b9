"""`watch(model, ...)`: monitor a PyTorch model's training in three lines.

    watcher = cm.watch(model, layers=["layer2", "layer3.1"], probe="bundles/<id>", target="host:50051")
    for step, (x, y) in enumerate(loader):
        ...; watcher.step(step, loss=loss.item())
    watcher.close()

At step 0 and every `every` steps, step() runs the bundle's probe images through the model in
eval mode under torch.inference_mode (no_grad) (train mode restored after), collects the monitored layers' outputs
with forward hooks, and hands the checkpoint to a MonitorClient, whose background thread sends it:
training only waits for the probe pass itself and, per the policy, for buffer room. Layer outputs:
  [B, C, H, W] (conv)           pooled over H, W on the client (`pool_on="client"`, default), or
                                sent raw as NHWC for the service to pool (`pool_on="service"`)
  [B, T, C] (transformer block) the class token (`tokens="cls"`, default, as CLIP-Dissect does
                                for ViTs) or the mean over tokens (`tokens="mean"`)
  [B, N] (dense, logits)        as they are
Under torch.distributed only rank 0 probes and sends; the other ranks' watchers do nothing.
torch is imported here only, so the rest of the package works without it.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from .bundle import ProbeBundle, load_bundle
from .client import ClientStats, MonitorClient
from .errors import CmError
from .wire import LayerActivations, LayerSpec, RunSpec, finite_or_raise

log = logging.getLogger("concept_monitor")

DEFAULT_TARGET = "127.0.0.1:50051"
#: Probe sets up to this many bytes as float32 are converted once and kept on the device.
CACHE_BYTES = 256 * 1024 * 1024


@dataclass
class WatchStats:
    """What monitoring cost and what reached the service."""

    probes: int = 0
    #: Seconds spent inside step() (probe passes + encoding + enqueueing).
    step_seconds: float = 0.0
    client: ClientStats = field(default_factory=ClientStats)

    @property
    def dropped_checkpoints(self) -> int:
        return self.client.dropped_checkpoints

    def as_dict(self) -> Dict[str, object]:
        return {"probes": self.probes, "step_seconds": self.step_seconds, **self.client.as_dict()}


def _rank() -> int:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
    except ImportError:  # pragma: no cover - torch without distributed
        pass
    return int(os.environ.get("RANK", "0"))


class _NoopWatcher:
    """The watcher of a rank other than 0 (or of a disabled run): every call does nothing."""

    rank: int

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.run_id: Optional[str] = None

    def step(self, step: int, **metrics: Any) -> None:
        return None

    @property
    def stats(self) -> WatchStats:
        return WatchStats()

    def close(self, status: str = "completed", timeout_s: Optional[float] = 60.0) -> WatchStats:
        return WatchStats()

    def __enter__(self) -> "_NoopWatcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close("failed" if exc[0] else "completed")


class Watcher:
    """Rank 0's watcher: probes at step 0 and every `every` steps; see watch()."""

    def __init__(
        self,
        model: Any,
        layers: Sequence[Union[str, Any]],
        bundle: ProbeBundle,
        client: MonitorClient,
        run_id: str,
        every: int,
        paradigm: str,
        tags: Mapping[str, str],
        transform: Optional[Callable[[Any], Any]],
        pool_on: str,
        pooling: str,
        tokens: str,
        batch_size: int,
        device: Any,
        resume: bool = False,
        random_inits: int = 8,
    ) -> None:
        import torch

        self._torch = torch
        self.model = model
        self.module = _unwrap(model)
        self.bundle = bundle
        self.client = client
        self.run_id = run_id
        self.every = every
        self.paradigm = paradigm
        self.resume = resume
        self.random_inits = random_inits
        #: Parameters the random-init baseline could not re-initialise (see random_init.fresh_copy).
        self.baseline_not_reset: List[str] = []
        self.tags = dict(tags)
        self.transform = transform
        self.pool_on = pool_on
        self.pooling = pooling
        self.tokens = tokens
        self.batch_size = batch_size
        self.rank = 0
        self._pid = os.getpid()
        self._layers = _resolve_layers(self.module, layers)
        self._device = device
        self._started = False
        self._closed = False
        self._last_probed: Optional[int] = None
        self._stats = WatchStats()
        self._inputs: Optional[Any] = None
        # A script that ends without close() still delivers what is buffered (bounded wait).
        atexit.register(self._close_at_exit)

    # ---- public ------------------------------------------------------------------------

    def step(self, step: int, **metrics: Any) -> None:
        """Call once per training step; probes and sends at step 0 and every `every` steps."""
        if os.getpid() != self._pid:
            return  # a forked worker: only the training process monitors
        if self._closed:
            raise CmError("UNAVAILABLE", f"watcher of run {self.run_id} is closed")
        if step % self.every != 0 or step == self._last_probed:
            return
        t0 = time.perf_counter()
        try:
            self._last_probed = step
            activations = self.probe()
            if not self._started:
                self._start(activations)
            values = {k: _scalar(k, v) for k, v in metrics.items()}
            self.client.send_checkpoint(int(step), activations, values)
            self._stats.probes += 1
        finally:
            self._stats.step_seconds += time.perf_counter() - t0

    @property
    def stats(self) -> WatchStats:
        self._stats.client = self.client.stats()
        return self._stats

    def close(self, status: str = "completed", timeout_s: Optional[float] = 60.0) -> WatchStats:
        """End the run: wait up to `timeout_s` for what is buffered or spooled, then stop. Returns
        the stats; `stats.dropped_checkpoints` counts what never reached the service."""
        if os.getpid() != self._pid:
            return WatchStats()
        if self._closed:
            return self._stats
        self._closed = True
        atexit.unregister(self._close_at_exit)
        self._stats.client = self.client.close(status, timeout_s) if self._started else self.client.close()
        if self._stats.client.dropped_checkpoints:
            log.warning(
                "run %s: %d checkpoint(s) dropped (service unreachable or buffer full)",
                self.run_id,
                self._stats.client.dropped_checkpoints,
            )
        return self._stats

    def _close_at_exit(self) -> None:
        if not self._closed and os.getpid() == self._pid:
            self.close("completed", timeout_s=30.0)

    def __enter__(self) -> "Watcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close("failed" if exc[0] else "completed")

    def probe(self) -> List[LayerActivations]:
        """One eval-mode pass over the probe images; the monitored layers' activations, in
        bundle order, as the wire carries them."""
        torch = self._torch
        outputs: Dict[int, List[np.ndarray]] = {i: [] for i in range(len(self._layers))}

        def hook_for(i: int) -> Callable[..., None]:
            def hook(_module: Any, _inputs: Any, output: Any) -> None:
                outputs[i].append(self._reduce(self._layers[i][0], _first_tensor(output)))

            return hook

        handles = [m.register_forward_hook(hook_for(i)) for i, (_, m) in enumerate(self._layers)]
        was_training = self.module.training
        self.module.eval()
        try:
            # inference_mode: no_grad without autograd's version counting (a little faster)
            with torch.inference_mode():
                for start in range(0, self.bundle.image_count, self.batch_size):
                    x = self._probe_batch(start, start + self.batch_size)
                    if self.transform is not None:
                        x = self.transform(x)
                    self.module(x)
        finally:
            for h in handles:
                h.remove()
            self.module.train(was_training)
        out = []
        for i, (name, _) in enumerate(self._layers):
            if not outputs[i]:
                raise CmError(
                    "INVALID_ARGUMENT",
                    f"layer {name} produced no output during the probe pass",
                    {"layer": name},
                    "is the module used in forward()?",
                )
            arr = np.concatenate(outputs[i], axis=0)
            finite_or_raise(name, arr)
            if self.client.dtype == "float16" and arr.size and float(np.abs(arr).max()) > 65504.0:
                raise CmError(
                    "INVALID_ARGUMENT",
                    f"layer {name}: activations up to {float(np.abs(arr).max()):.4g} overflow float16 (max 65504)",
                    {"layer": name},
                    "send this run with dtype='float32'",
                )
            raw = arr.ndim == 4
            out.append(LayerActivations(name, arr, self.pooling if raw else "avg"))
        return out

    # ---- internals ---------------------------------------------------------------------

    def _probe_batch(self, start: int, end: int) -> Any:
        """Probe images [start, end) as float32 NCHW in [0, 1] on the model's device. A probe set
        of up to CACHE_BYTES as floats is converted once and kept; a larger one batch by batch."""
        torch = self._torch

        def convert(images: np.ndarray) -> Any:
            x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
            return x.to(self._device) if self._device is not None else x

        if self.bundle.images.size * 4 > CACHE_BYTES:
            return convert(self.bundle.images[start:end])
        if self._inputs is None:
            self._inputs = convert(self.bundle.images)
        return self._inputs[start:end]

    def _reduce(self, name: str, t: Any) -> np.ndarray:
        """A layer's output for one batch -> [B, N] or raw [B, H, W, C], float32 on the CPU."""
        t = t.detach()
        if t.dim() == 4:
            if self.pool_on == "service":
                t = t.permute(0, 2, 3, 1)  # NCHW -> NHWC, as the wire wants
            elif self.pooling == "max":
                t = t.amax(dim=(2, 3))
            else:
                t = t.mean(dim=(2, 3))
        elif t.dim() == 3:
            t = t[:, 0, :] if self.tokens == "cls" else t.mean(dim=1)
        elif t.dim() != 2:
            raise CmError(
                "INVALID_ARGUMENT",
                f"layer {name}: output of shape {list(t.shape)} is not [B, N], [B, C, H, W] or [B, tokens, C]",
                {"layer": name, "shape": list(t.shape)},
                "monitor a module whose output is one of those, e.g. a conv block, a transformer block or the logits",
            )
        return t.float().cpu().contiguous().numpy()

    def _start(self, activations: Sequence[LayerActivations]) -> None:
        layers = [
            LayerSpec(a.layer, int(a.data.shape[-1]), "conv" if self._is_conv(a) else "dense") for a in activations
        ]
        spec = RunSpec(
            run_id=self.run_id,
            model=type(self.module).__name__,
            paradigm=self.paradigm,
            bundle_id=self.bundle.id,
            layers=layers,
            tags={**self.tags, "sdk": "python"},
        )
        self.client.start_run(spec, resume=self.resume)
        self._started = True
        try:
            self._send_random_inits()
        except Exception as e:  # the learned figure stays unknown; training and the association figure go on
            log.warning("run %s: the random-init baseline was not sent: %s", self.run_id, e)

    def _send_random_inits(self) -> None:
        """The learned-concept baseline (docs/dissect.md, "Learned concepts"): when the service has
        none for this architecture and bundle (or, policy spool, cannot say yet: the service is
        down, and they are spooled and sent first when it is back), `random_inits` freshly
        initialised copies of the model (random_init.fresh_copy: reset_parameters(), torch's
        default init for parameters of modules without it) are probed like a checkpoint and sent
        once, before the first checkpoint. Parameters that could not be re-initialised are named
        in a warning (RandomInitEnd has no field for them)."""
        if self.random_inits <= 0 or not self.client.baseline_wanted():
            return
        from .random_init import fresh_copy

        own_module, own_layers = self.module, self._layers
        try:
            for index in range(self.random_inits):
                fresh, not_reset = fresh_copy(own_module)
                if not_reset and index == 0:
                    log.warning(
                        "run %s: random-init baseline: %d parameter(s) keep their trained values (no default "
                        "initialisation for their shape): %s; the learned-concept figure is measured against a "
                        "partly trained network",
                        self.run_id,
                        len(not_reset),
                        ", ".join(not_reset),
                    )
                    self.baseline_not_reset = list(not_reset)
                self.module = fresh
                self._layers = _resolve_layers(fresh, [name for name, _ in own_layers])
                activations = self.probe()
                self.client.send_baseline(index, self.random_inits, activations)
        finally:
            self.module, self._layers = own_module, own_layers

    def _is_conv(self, a: LayerActivations) -> bool:
        if a.data.ndim == 4:
            return True
        module = dict(self._layers)[a.layer]
        return "Conv" in type(module).__name__ or _last_conv_like(module)


def _last_conv_like(module: Any) -> bool:
    """A block whose output is a conv feature map pooled on the client counts as conv."""
    try:
        import torch.nn as nn

        return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())
    except ImportError:  # pragma: no cover
        return False


def _unwrap(model: Any) -> Any:
    """(Distributed)DataParallel -> the module it wraps: probing it directly runs no collective."""
    inner = getattr(model, "module", None)
    if inner is not None and type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
        return inner
    return model


def _resolve_layers(module: Any, layers: Sequence[Union[str, Any]]) -> List[tuple]:
    named = dict(module.named_modules())
    by_id = {id(m): n for n, m in named.items()}
    out: List[tuple] = []
    for layer in layers:
        if isinstance(layer, str):
            key = layer[len("module.") :] if layer.startswith("module.") and layer not in named else layer
            if key not in named or key == "":
                known = [n for n in named if n][:20]
                raise CmError(
                    "NOT_FOUND",
                    f"the model has no module named {layer!r}",
                    {"layer": layer},
                    f"modules: {', '.join(known)}{' ...' if len(named) > 21 else ''}",
                )
            out.append((key, named[key]))
        else:
            name = by_id.get(id(layer))
            if name is None or name == "":
                raise CmError(
                    "NOT_FOUND",
                    f"module {type(layer).__name__} is not a submodule of the watched model",
                    hint="pass a module of the model (model.layer3[1]) or its name ('layer3.1')",
                )
            out.append((name, layer))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise CmError("INVALID_ARGUMENT", f"layers repeat: {names}")
    return out


def _default_layers(module: Any) -> List[str]:
    """Every conv layer's output plus the last Linear (the logits)."""
    import torch.nn as nn

    convs = [n for n, m in module.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    chosen = convs + linears[-1:]
    if not chosen:
        raise CmError(
            "INVALID_ARGUMENT",
            f"{type(module).__name__} has no Conv or Linear module to monitor by default",
            hint="name the layers: watch(model, layers=['blocks.3', 'head'])",
        )
    return chosen


def _first_tensor(output: Any) -> Any:
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict):
        for v in output.values():
            if isinstance(v, torch.Tensor):
                return v
    raise CmError("INVALID_ARGUMENT", f"a monitored layer returned {type(output).__name__}, not a tensor")


def _scalar(name: str, v: Any) -> float:
    if hasattr(v, "item"):
        v = v.item()
    try:
        return float(v)
    except (TypeError, ValueError) as e:
        raise CmError("INVALID_ARGUMENT", f"metric {name}={v!r} is not a number") from e


def watch(
    model: Any,
    layers: Optional[Sequence[Union[str, Any]]] = None,
    probe: Union[str, ProbeBundle, None] = None,
    target: Union[str, Sequence[str], None] = None,
    run_id: Optional[str] = None,
    every: int = 100,
    paradigm: str = "standard",
    tags: Optional[Mapping[str, str]] = None,
    policy: str = "wait",
    *,
    transform: Optional[Callable[[Any], Any]] = None,
    pool_on: str = "client",
    pooling: str = "avg",
    tokens: str = "cls",
    dtype: str = "float32",
    batch_size: int = 128,
    device: Any = None,
    resume: bool = False,
    random_inits: int = 8,
    **client_options: Any,
) -> Union[Watcher, _NoopWatcher]:
    """Monitor `model`: see the module docstring.

    layers      module names ("layer3.1") or module objects; default every conv layer and the last Linear
    probe       a probe bundle folder (cm probe make --root BUNDLES; the service must hold the same id)
    target      host:port of the concept service or `cm serve` (default CM_GRPC_TARGET or 127.0.0.1:50051);
                several replicas as a list or comma-separated: the run fails over to the next one
    policy      "wait" | "drop" | "spool" when the service is slow or down (see MonitorClient)
    transform   applied to each float32 NCHW [0, 1] probe batch before the model (normalisation...)
    pool_on     "client" (send [D, C]) or "service" (send raw NHWC); pooling "avg" | "max"
    tokens      [B, T, C] outputs: "cls" (token 0) or "mean"
    dtype       "float32" or "float16" on the wire
    resume      continue the run `run_id` if the service knows it (a resumed training job); without
                it a known run id is refused (ALREADY_EXISTS) so a second run never mixes into the first
    random_inits  random initialisations sent once per architecture and bundle for the learned-concept
                figure (default 8; 0: none, the learned figure then stays unknown)
    client_options  passed to MonitorClient (max_block_s, max_buffered_bytes, spool_dir, ...)
    """
    if not isinstance(every, int) or every < 1:
        raise CmError("INVALID_ARGUMENT", f"every must be a positive integer, got {every!r}")
    if not isinstance(random_inits, int) or random_inits < 0:
        raise CmError("INVALID_ARGUMENT", f"random_inits must be a non-negative integer, got {random_inits!r}")
    if pool_on not in ("client", "service"):
        raise CmError("INVALID_ARGUMENT", f"pool_on must be 'client' or 'service', got {pool_on!r}")
    if pooling not in ("avg", "max"):
        raise CmError("INVALID_ARGUMENT", f"pooling must be 'avg' or 'max', got {pooling!r}")
    if tokens not in ("cls", "mean"):
        raise CmError("INVALID_ARGUMENT", f"tokens must be 'cls' or 'mean', got {tokens!r}")
    if probe is None:
        raise CmError("INVALID_ARGUMENT", "watch() needs probe=BUNDLE_DIR", hint="make one with npx cm probe make --root DIR")
    rank = _rank()
    if rank != 0:
        return _NoopWatcher(rank)
    bundle = probe if isinstance(probe, ProbeBundle) else load_bundle(probe)
    module = _unwrap(model)
    chosen = list(layers) if layers else _default_layers(module)
    if device is None:
        try:
            device = next(module.parameters()).device
        except StopIteration:
            device = None
    client = MonitorClient(
        target or os.environ.get("CM_GRPC_TARGET", DEFAULT_TARGET), policy=policy, dtype=dtype, **client_options
    )
    return Watcher(
        model,
        chosen,
        bundle,
        client,
        run_id or f"{type(module).__name__.lower()}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
        every,
        paradigm,
        tags or {},
        transform,
        pool_on,
        pooling,
        tokens,
        batch_size,
        device,
        resume,
        random_inits,
    )
