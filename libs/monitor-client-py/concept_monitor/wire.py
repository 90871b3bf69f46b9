"""The Python side of protos/conceptmonitor/v1/monitor.proto: pure conversions from checkpoints to
the serialized TrainerMessages that carry them, as libs/monitor-client/src/wire.ts does.

A layer's tensor ([D, N] pooled or [D, H, W, C] raw NHWC, float32 or float16, little-endian, C
order) is cut into ActivationChunks of at most `chunk_bytes` payload bytes (offset 0, then the bytes
sent so far, the header repeated in every chunk), then CheckpointEnd carries the step and metrics.
Messages are serialized once here: the sender writes the same bytes again on a resend and the spool
stores them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence

import numpy as np

from ._proto import monitor_pb2 as pb
from .errors import CmError

MONITOR_METHOD = "/conceptmonitor.v1.ConceptMonitor/Monitor"
HEALTH_METHOD = "/conceptmonitor.v1.ConceptMonitor/Health"
#: Default chunk payload: a quarter of gRPC's 4 MiB default message limit (as the TS client).
DEFAULT_CHUNK_BYTES = 1024 * 1024
WIRE_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class LayerSpec:
    """A monitored layer as declared in RunStart: width = neurons, kind 'conv' or 'dense'."""

    name: str
    width: int
    kind: str


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    model: str
    paradigm: str
    bundle_id: str
    layers: Sequence[LayerSpec]
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass
class LayerActivations:
    """One layer at one checkpoint: float values of shape [D, N] or [D, H, W, C] (NHWC)."""

    layer: str
    data: np.ndarray
    pooling: str = "avg"


def run_start_message(spec: RunSpec, resume: bool, start_token: str = "") -> bytes:
    """RunStart. `start_token` is random per start of a run and the same on every reconnect of it
    (RunStart.start_token): a RunStart repeated after a lost answer continues the run instead of
    being refused as a second run under the same id."""
    m = pb.TrainerMessage()
    rs = m.run_start
    rs.run_id = spec.run_id
    rs.model = spec.model
    rs.paradigm = spec.paradigm
    rs.bundle_id = spec.bundle_id
    for layer in spec.layers:
        rs.layers.add(
            name=layer.name,
            width=int(layer.width),
            kind=pb.LAYER_KIND_CONV if layer.kind == "conv" else pb.LAYER_KIND_DENSE,
        )
    for k, v in spec.tags.items():
        rs.tags[str(k)] = str(v)
    rs.resume = resume
    rs.start_token = start_token
    return m.SerializeToString()


def run_end_message(status: str) -> bytes:
    m = pb.TrainerMessage()
    m.run_end.status = pb.RUN_STATUS_FAILED if status == "failed" else pb.RUN_STATUS_COMPLETED
    return m.SerializeToString()


def encode_floats(data: np.ndarray, dtype: str) -> bytes:
    """Little-endian bytes of `data` as float32 or float16 (numpy rounds to nearest even, like
    libs/monitor-client/src/float16.ts). Always a copy."""
    if dtype not in WIRE_DTYPES:
        raise CmError("INVALID_ARGUMENT", f"wire dtype must be float32 or float16, got {dtype!r}")
    with np.errstate(over="ignore"):  # overflow to +-inf, as the TS encoder does
        return np.ascontiguousarray(data, dtype="<f2" if dtype == "float16" else "<f4").tobytes()


def checkpoint_messages(
    step: int,
    layers: Sequence[LayerActivations],
    metrics: Mapping[str, float],
    dtype: str = "float32",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> List[bytes]:
    """Serialized messages of one checkpoint: each layer in chunks, then CheckpointEnd."""
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CmError("INVALID_ARGUMENT", f"checkpoint step must be a non-negative integer, got {step!r}")
    if chunk_bytes < 1024:
        raise CmError("INVALID_ARGUMENT", f"chunk_bytes must be at least 1024, got {chunk_bytes}")
    wire_dtype = pb.DTYPE_FLOAT16 if dtype == "float16" else pb.DTYPE_FLOAT32
    out: List[bytes] = []
    for layer in layers:
        arr = np.asarray(layer.data)
        if arr.ndim not in (2, 4):
            raise CmError(
                "INVALID_ARGUMENT",
                f"layer {layer.layer}: shape {list(arr.shape)} must be [D, N] (pooled) or [D, H, W, C] (raw NHWC)",
                {"layer": layer.layer, "step": step},
            )
        payload = encode_floats(arr, dtype)
        pooling = pb.POOLING_MAX if layer.pooling == "max" else pb.POOLING_AVG
        piece = chunk_bytes - (chunk_bytes % 4)  # keep chunk boundaries on value boundaries
        view = memoryview(payload)
        offset = 0
        while True:
            m = pb.TrainerMessage()
            c = m.chunk
            c.step = step
            c.layer = layer.layer
            c.shape.extend(int(n) for n in arr.shape)
            c.dtype = wire_dtype
            c.pooling = pooling
            c.offset = offset
            c.total_bytes = len(payload)
            end = min(offset + piece, len(payload))
            c.data = bytes(view[offset:end])
            out.append(m.SerializeToString())
            offset = end
            if offset >= len(payload):
                break
    end_msg = pb.TrainerMessage()
    end_msg.checkpoint_end.step = step
    for k, v in metrics.items():
        end_msg.checkpoint_end.metrics[str(k)] = float(v)
    out.append(end_msg.SerializeToString())
    return out


def payload_bytes(messages: Sequence[bytes]) -> int:
    """Bytes a message list holds (for the buffer bound)."""
    return sum(len(m) for m in messages) + 256


@dataclass
class CheckpointResult:
    """What the service acknowledged for a checkpoint (CheckpointAck)."""

    step: int
    layers: List[Dict[str, object]]
    alerts: List[Dict[str, str]]


def result_from_ack(ack: "pb.CheckpointAck") -> CheckpointResult:
    return CheckpointResult(
        step=int(ack.step),
        layers=[
            {
                "layer": layer.layer,
                # the learned-concept share (beyond random init); None while the run's architecture
                # has no random-init baseline on its bundle (docs/dissect.md, "Learned concepts")
                "learned_fraction": layer.learned_fraction if layer.has_learned_fraction else None,
                # the association share (shuffle null)
                "interpretable_fraction": layer.interpretable_fraction,
                "distinct_concept_share": layer.distinct_concept_share,
                "label_entropy": layer.label_entropy,
                "top_concepts": [(c.concept, int(c.count)) for c in layer.top_concepts],
            }
            for layer in ack.layers
        ],
        alerts=[{"layer": a.layer, "rule": a.rule, "state": a.state, "message": a.message} for a in ack.alerts],
    )


def finite_or_raise(name: str, arr: np.ndarray) -> None:
    """NaN/Inf would end the stream with INVALID_ARGUMENT at the service; say so before sending."""
    if not np.isfinite(arr).all():
        bad = int(np.argmin(np.isfinite(arr).reshape(-1)))
        raise CmError(
            "INVALID_ARGUMENT",
            f"layer {name}: activations contain NaN or infinite values (first at flat index {bad})",
            {"layer": name, "index": bad},
            "the model diverged, or the layer output is not a float tensor",
        )
