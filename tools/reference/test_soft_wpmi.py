"""The PyTorch soft_wpmi of tools/reference reproduces the reference test vectors (float32)."""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "..", "..", "shared", "testvectors", "clip-dissect", "public_small")


def test_matches_reference_vectors(tmp_path):
    meta = json.load(open(os.path.join(VECTORS, "meta.json")))
    out = tmp_path / "sim.npy"
    subprocess.run(
        [sys.executable, os.path.join(HERE, "soft_wpmi.py"), os.path.join(VECTORS, "clip_feats.npy"),
         os.path.join(VECTORS, "target_feats.npy"), str(out)],
        check=True, capture_output=True,
    )
    got = np.load(out)
    want = np.load(os.path.join(VECTORS, "soft_wpmi.npy"))
    assert got.shape == (meta["N"], meta["S"])
    # the port is bit-identical to the reference on this machine; 1e-5 leaves room for other BLAS builds
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert (got.argmax(1) == want.argmax(1)).all()
