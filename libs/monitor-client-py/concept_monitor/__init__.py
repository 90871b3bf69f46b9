"""concept_monitor: the Python SDK of Concept-Monitor.

    import concept_monitor as cm
    watcher = cm.watch(model, layers=["layer3.1"], probe="bundles/<id>", target="127.0.0.1:50051")
    ... watcher.step(step, loss=loss.item()) ...
    stats = watcher.close()

Runtime dependencies: grpcio, protobuf, numpy; torch only for watch() (imported when called).
"""

from .bundle import ProbeBundle, load_bundle
from .client import ClientStats, MonitorClient, health
from .errors import CmError
from .wire import CheckpointResult, LayerActivations, LayerSpec, RunSpec

__version__ = "0.1.0"


def watch(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Monitor a PyTorch model's training; see concept_monitor.watcher.watch."""
    from .watcher import watch as _watch

    return _watch(*args, **kwargs)


__all__ = [
    "CheckpointResult",
    "ClientStats",
    "CmError",
    "LayerActivations",
    "LayerSpec",
    "MonitorClient",
    "ProbeBundle",
    "RunSpec",
    "health",
    "load_bundle",
    "watch",
]
