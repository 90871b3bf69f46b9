"""Checkpoints on the wire: chunking as libs/monitor-client/src/wire.ts does it."""

import numpy as np
import pytest

from concept_monitor._proto import monitor_pb2 as pb
from concept_monitor.errors import CmError
from concept_monitor.wire import LayerActivations, checkpoint_messages, encode_floats


def decode(messages):
    return [pb.TrainerMessage.FromString(m) for m in messages]


def test_a_layer_is_cut_into_ordered_chunks_with_the_header_repeated():
    data = np.arange(2 * 4 * 4 * 300, dtype=np.float32).reshape(2, 4, 4, 300)  # 38400 bytes
    msgs = decode(checkpoint_messages(7, [LayerActivations("conv", data, "max")], {"loss": 0.5}, chunk_bytes=10_000))
    chunks = [m.chunk for m in msgs[:-1]]
    assert [c.offset for c in chunks] == [0, 10_000, 20_000, 30_000]
    assert {c.total_bytes for c in chunks} == {38_400}
    assert all(list(c.shape) == [2, 4, 4, 300] and c.layer == "conv" and c.step == 7 for c in chunks)
    assert {c.pooling for c in chunks} == {pb.POOLING_MAX} and {c.dtype for c in chunks} == {pb.DTYPE_FLOAT32}
    joined = b"".join(c.data for c in chunks)
    assert np.array_equal(np.frombuffer(joined, dtype="<f4").reshape(data.shape), data)
    end = msgs[-1].checkpoint_end
    assert end.step == 7 and dict(end.metrics) == {"loss": 0.5}


def test_float16_halves_the_bytes_and_rounds_to_nearest_even():
    data = np.array([[1.0, 1.0 + 2**-11, 1.0 + 3 * 2**-11, 70000.0]], dtype=np.float32)
    msgs = decode(checkpoint_messages(0, [LayerActivations("d", data)], {}, dtype="float16"))
    c = msgs[0].chunk
    assert c.dtype == pb.DTYPE_FLOAT16 and c.total_bytes == 8
    half = np.frombuffer(c.data, dtype="<f2")
    # 1 + 2^-11 is a tie -> even (1.0); 1 + 3*2^-11 -> 1 + 2^-9; overflow -> inf
    assert half.tolist() == [1.0, 1.0, 1.0 + 2**-9, float("inf")]


def test_bad_input_is_refused_before_sending():
    with pytest.raises(CmError, match="non-negative integer"):
        checkpoint_messages(-1, [], {})
    with pytest.raises(CmError, match=r"\[D, N\]"):
        checkpoint_messages(0, [LayerActivations("x", np.zeros((2, 3, 4), np.float32))], {})
    with pytest.raises(CmError, match="float32 or float16"):
        encode_floats(np.zeros(2, np.float32), "bfloat16")


def test_an_ack_carries_the_learned_share_when_known_and_none_when_not():
    from concept_monitor.wire import result_from_ack

    ack = pb.CheckpointAck(
        step=3,
        layers=[
            pb.LayerSummary(layer="conv1", interpretable_fraction=0.9, learned_fraction=0.0,
                            has_learned_fraction=True),
            pb.LayerSummary(layer="conv2", interpretable_fraction=0.6, learned_fraction=0.25,
                            has_learned_fraction=True),
            pb.LayerSummary(layer="fc", interpretable_fraction=0.8),
        ],
    )
    layers = result_from_ack(pb.CheckpointAck.FromString(ack.SerializeToString())).layers
    assert [(l["layer"], l["learned_fraction"], l["interpretable_fraction"]) for l in layers] == [
        ("conv1", 0.0, pytest.approx(0.9)),
        ("conv2", 0.25, pytest.approx(0.6)),
        ("fc", None, pytest.approx(0.8)),
    ]
