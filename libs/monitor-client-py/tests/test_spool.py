"""The spool folder: bounded, oldest first, byte-exact, refuses a folder holding another run's files."""

import os

import pytest

from concept_monitor.errors import CmError
from concept_monitor.spool import Spool


def test_checkpoints_come_back_in_order_byte_exact_and_the_files_go(tmp_path):
    sp = Spool(str(tmp_path / "s"), max_bytes=10_000)
    sp.put(3, [b"a" * 10, b"", b"\x00\x01"])
    sp.put(4, [b"b" * 100])
    sp.put(-1, [b"end"])
    assert len(sp) == 3 and sp.checkpoints() == 2
    assert sorted(os.listdir(tmp_path / "s")) == ["000000000001-3.ckpt", "000000000002-4.ckpt", "000000000003--1.ckpt"]
    assert sp.pop() == (3, [b"a" * 10, b"", b"\x00\x01"])
    assert sp.pop() == (4, [b"b" * 100])
    assert sp.pop() == (-1, [b"end"])
    assert os.listdir(tmp_path / "s") == [] and sp.bytes == 0


def test_the_bound_counts_bytes_on_disk(tmp_path):
    sp = Spool(str(tmp_path), max_bytes=250)
    assert sp.fits(200)
    sp.put(0, [b"x" * 196])  # 4-byte length + 196
    assert sp.bytes == 200 and not sp.fits(51) and sp.fits(50)
    assert sp.close() == 1 and os.listdir(tmp_path) == []


def test_a_folder_with_another_runs_checkpoints_is_refused(tmp_path):
    (tmp_path / "000000000001-0.ckpt").write_bytes(b"")
    with pytest.raises(CmError, match="already holds 1 checkpoint file"):
        Spool(str(tmp_path), max_bytes=1000)
