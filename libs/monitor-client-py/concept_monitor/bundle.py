"""Reading and verifying a probe bundle, as libs/probe/src/bundle.ts (loadBundle) does.

A bundle folder holds manifest.json and five .npy arrays; the manifest lists every array's file,
dtype, shape and sha256, and the bundle id is the first 16 hex digits of sha256 over the manifest's
canonical JSON (keys sorted at every level) without the id. Any mismatch is CmError('CORRUPT')
naming the file; a folder without manifest.json is NOT_FOUND (docs/probe.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np

from .errors import CmError

BUNDLE_FORMAT = "cm-probe-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"

ARRAY_FILES = {
    "images": "images.npy",
    "probeScores": "probe_scores.npy",
    "conceptEmbeddings": "concept_embeddings.npy",
    "projectionComponents": "projection_components.npy",
    "projectionMean": "projection_mean.npy",
}
ARRAY_DTYPES = {
    "images": "uint8",
    "probeScores": "float32",
    "conceptEmbeddings": "float32",
    "projectionComponents": "float32",
    "projectionMean": "float32",
}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class ProbeBundle:
    """A loaded, verified bundle. `images` is uint8 [D, H, W, 3] (NHWC, RGB)."""

    id: str
    dir: str
    manifest: Dict[str, Any]
    images: np.ndarray
    concepts: List[str]
    categories: List[str]
    probe_scores: np.ndarray
    concept_embeddings: np.ndarray

    @property
    def image_count(self) -> int:
        return int(self.images.shape[0])


def _js_json(value: Any) -> str:
    """JSON.stringify of one scalar (no spaces; non-ASCII kept as is, like JavaScript)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # JSON.stringify(32.0) is "32"
    return json.dumps(value, ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """JSON with keys sorted at every level: the form the bundle id is computed over."""
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value.keys())
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{canonical_json(value[k])}" for k in keys) + "}"
    return _js_json(value)


def bundle_id_of(manifest_without_id: Dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(manifest_without_id).encode("utf-8")).hexdigest()[:16]


def _corrupt(d: str, file: str, why: str) -> CmError:
    return CmError(
        "CORRUPT",
        f"probe bundle {d}: {file} {why}",
        {"bundle": d, "file": os.path.join(d, file)},
        "rebuild the bundle (cm probe make / cm probe build)",
    )


def _check_manifest(d: str, m: Any) -> None:
    """The parts of the manifest schema (libs/probe manifestSchema) this reader relies on."""

    def bad(path: str, why: str) -> CmError:
        return _corrupt(d, MANIFEST_FILE, f"does not match the bundle format v{BUNDLE_FORMAT_VERSION}: {path}: {why}")

    if not isinstance(m, dict):
        raise bad("", "expected an object")
    if m.get("format") != BUNDLE_FORMAT:
        raise bad("format", f"expected '{BUNDLE_FORMAT}'")
    if m.get("formatVersion") != BUNDLE_FORMAT_VERSION:
        raise bad("formatVersion", f"expected {BUNDLE_FORMAT_VERSION}")
    if not isinstance(m.get("id"), str) or not _HEX16.match(m["id"]):
        raise bad("id", "expected 16 hex digits")
    shape = m.get("imageShape")
    if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(n, int) and n > 0 for n in shape)):
        raise bad("imageShape", "expected 4 positive integers")
    concepts = m.get("concepts")
    if not (isinstance(concepts, list) and concepts):
        raise bad("concepts", "expected a non-empty list")
    for i, c in enumerate(concepts):
        if not (isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"] and isinstance(c.get("category"), str) and c["category"]):
            raise bad(f"concepts.{i}", "expected {name, category}")
    arrays = m.get("arrays")
    if not isinstance(arrays, dict):
        raise bad("arrays", "expected an object")
    for role in ARRAY_FILES:
        e = arrays.get(role)
        if not isinstance(e, dict):
            raise bad(f"arrays.{role}", "missing")
        if not isinstance(e.get("file"), str):
            raise bad(f"arrays.{role}.file", "expected a string")
        if e.get("dtype") not in ("uint8", "float32"):
            raise bad(f"arrays.{role}.dtype", "expected uint8 or float32")
        if not (isinstance(e.get("shape"), list) and all(isinstance(n, int) and n >= 0 for n in e["shape"])):
            raise bad(f"arrays.{role}.shape", "expected non-negative integers")
        if not (isinstance(e.get("sha256"), str) and _HEX64.match(e["sha256"])):
            raise bad(f"arrays.{role}.sha256", "expected 64 hex digits")


def load_bundle(path: str) -> ProbeBundle:
    """Read and verify a bundle: manifest, id, every array's sha256, dtype and shape."""
    d = os.path.abspath(path)
    if not os.path.isdir(d):
        raise CmError("NOT_FOUND", f"probe bundle {path} does not exist or is not a folder", {"bundle": d})
    manifest_path = os.path.join(d, MANIFEST_FILE)
    if not os.path.exists(manifest_path):
        raise CmError(
            "NOT_FOUND",
            f"probe bundle {path}: {MANIFEST_FILE} is missing",
            {"bundle": d, "file": manifest_path},
            "is this a probe bundle folder? make one with cm probe make",
        )
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except ValueError as e:
        raise _corrupt(d, MANIFEST_FILE, f"is not valid JSON: {e}") from e
    _check_manifest(d, manifest)
    without_id = {k: v for k, v in manifest.items() if k != "id"}
    expected_id = bundle_id_of(without_id)
    if expected_id != manifest["id"]:
        raise _corrupt(d, MANIFEST_FILE, f"was edited: its content hash is {expected_id}, its id says {manifest['id']}")

    n_img, h, w = manifest["imageShape"][:3]
    s = len(manifest["concepts"])
    emb_shape = manifest["arrays"]["conceptEmbeddings"]["shape"]
    dim = emb_shape[1] if len(emb_shape) > 1 else -1
    expected: Dict[str, Tuple[int, ...]] = {
        "images": (n_img, h, w, 3),
        "probeScores": (n_img, s),
        "conceptEmbeddings": (s, dim),
        "projectionComponents": (dim, 2),
        "projectionMean": (dim,),
    }

    def read(role: str) -> np.ndarray:
        entry = manifest["arrays"][role]
        if entry["file"] != ARRAY_FILES[role]:
            raise _corrupt(d, MANIFEST_FILE, f"names {entry['file']} for {role}, expected {ARRAY_FILES[role]}")
        p = os.path.join(d, entry["file"])
        if not os.path.exists(p):
            raise _corrupt(d, entry["file"], "is missing")
        with open(p, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise _corrupt(d, entry["file"], f"does not match its hash in the manifest (changed or truncated; {len(data)} bytes)")
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as e:  # numpy raises ValueError/EOFError/... for a bad header
            raise _corrupt(d, entry["file"], f"is not a readable .npy file: {e}") from e
        if arr.dtype != np.dtype(ARRAY_DTYPES[role]):
            raise _corrupt(d, entry["file"], f"has dtype {arr.dtype}, expected {ARRAY_DTYPES[role]}")
        want = expected[role]
        if tuple(arr.shape) != want:
            raise _corrupt(
                d,
                entry["file"],
                f"has shape ({', '.join(map(str, arr.shape))}), expected ({', '.join(map(str, want))})",
            )
        return np.ascontiguousarray(arr)

    images = read("images")
    probe_scores = read("probeScores")
    embeddings = read("conceptEmbeddings")
    read("projectionComponents")
    read("projectionMean")
    return ProbeBundle(
        id=manifest["id"],
        dir=d,
        manifest=manifest,
        images=images,
        concepts=[c["name"] for c in manifest["concepts"]],
        categories=[c["category"] for c in manifest["concepts"]],
        probe_scores=probe_scores,
        concept_embeddings=embeddings,
    )
