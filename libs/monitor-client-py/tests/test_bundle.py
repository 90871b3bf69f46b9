"""Reading and verifying probe bundles made by the TypeScript side (cm probe make)."""

import json
import os
import shutil

import numpy as np
import pytest

import concept_monitor as cm
from conftest import PROBE_IMAGES


@pytest.fixture
def copy(bundle, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(bundle.dir, d)
    return str(d)


def test_loads_a_bundle_with_the_id_typescript_computed(bundle):
    b = cm.load_bundle(bundle.dir)
    assert b.id == bundle.id
    assert b.images.dtype == np.uint8 and b.images.shape == (PROBE_IMAGES, 32, 32, 3)
    assert b.probe_scores.shape == (PROBE_IMAGES, len(b.concepts))
    assert "circle" in b.concepts and len(b.concepts) == len(b.categories)


def test_a_changed_image_byte_is_corrupt_naming_images_npy(copy):
    p = os.path.join(copy, "images.npy")
    data = bytearray(open(p, "rb").read())
    data[-1] ^= 0xFF
    open(p, "wb").write(bytes(data))
    with pytest.raises(cm.CmError) as e:
        cm.load_bundle(copy)
    assert e.value.code == "CORRUPT" and "images.npy" in str(e.value) and "hash" in str(e.value)


def test_an_edited_manifest_is_corrupt(copy):
    p = os.path.join(copy, "manifest.json")
    m = json.load(open(p))
    m["concepts"][0]["name"] = "not-a-circle"
    json.dump(m, open(p, "w"))
    with pytest.raises(cm.CmError) as e:
        cm.load_bundle(copy)
    assert e.value.code == "CORRUPT" and "was edited" in str(e.value)


def test_a_truncated_array_and_a_missing_file_are_corrupt(copy):
    p = os.path.join(copy, "probe_scores.npy")
    open(p, "r+b").truncate(100)
    with pytest.raises(cm.CmError, match="probe_scores.npy") as e:
        cm.load_bundle(copy)
    assert e.value.code == "CORRUPT"
    os.remove(p)
    with pytest.raises(cm.CmError, match="probe_scores.npy is missing"):
        cm.load_bundle(copy)


def test_a_folder_without_manifest_is_not_found(tmp_path):
    with pytest.raises(cm.CmError) as e:
        cm.load_bundle(str(tmp_path))
    assert e.value.code == "NOT_FOUND" and "manifest.json is missing" in str(e.value)
    with pytest.raises(cm.CmError) as e:
        cm.load_bundle(str(tmp_path / "nope"))
    assert e.value.code == "NOT_FOUND"
