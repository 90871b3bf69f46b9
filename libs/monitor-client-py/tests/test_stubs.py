"""The committed stubs are what scripts/gen_protos.py makes of protos/ today, and its --check says
so, or names the stale files when the protos say more than the stubs (shown on modified copies of
protos/ in a temporary folder)."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import PACKAGE, REPO

SCRIPT = os.path.join(PACKAGE, "scripts", "gen_protos.py")
COMMITTED = os.path.join(PACKAGE, "concept_monitor", "_proto")
PROTOS = os.path.join(REPO, "protos")
PROTO_REL = os.path.join("conceptmonitor", "v1", "monitor.proto")


def gen_protos(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=60)


def modified_protos(tmp: str, edit) -> str:
    """A copy of protos/ under tmp whose monitor.proto is edit(text); its root folder."""
    root = os.path.join(tmp, "protos")
    shutil.copytree(PROTOS, root)
    path = os.path.join(root, PROTO_REL)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    changed = edit(text)
    assert changed != text, "the edit did not change monitor.proto"
    with open(path, "w", encoding="utf-8") as f:
        f.write(changed)
    return root


def add_chunk_field(text: str) -> str:
    return re.sub(r"(message ActivationChunk \{[^}]*?)\n\}", r"\1\n  uint32 replica = 99;\n}", text, count=1)


def add_message(text: str) -> str:
    return text + "\nmessage DriftProbe {\n  string note = 1;\n}\n"


def add_rpc(text: str) -> str:
    return text.replace(
        "  rpc Health(HealthRequest) returns (HealthResponse);",
        "  rpc Health(HealthRequest) returns (HealthResponse);\n  rpc Ping(HealthRequest) returns (HealthResponse);",
        1,
    )


def test_check_passes_on_the_committed_stubs():
    res = gen_protos("--check")
    assert res.returncode == 0, res.stderr
    assert "up to date" in res.stdout
    # the same with both folders given explicitly
    res = gen_protos("--check", "--proto-dir", PROTOS, "--out", COMMITTED)
    assert res.returncode == 0, res.stderr


def test_committed_stubs_match_a_fresh_generation():
    with tempfile.TemporaryDirectory() as out:
        res = gen_protos(out)  # the positional OUT_DIR form still works
        assert res.returncode == 0, res.stderr
        fresh = sorted(f for f in os.listdir(out) if f.endswith(".py"))
        assert fresh == ["__init__.py", "monitor_pb2.py", "monitor_pb2_grpc.py"]
        for name in fresh:
            with open(os.path.join(out, name), "rb") as a, open(os.path.join(COMMITTED, name), "rb") as b:
                assert a.read() == b.read(), f"{name} differs from a fresh generation"


@pytest.mark.parametrize(
    "edit, stale",
    [
        (add_chunk_field, ["monitor_pb2.py"]),
        (add_message, ["monitor_pb2.py"]),
        (add_rpc, ["monitor_pb2.py", "monitor_pb2_grpc.py"]),
    ],
    ids=["new-field", "new-message", "new-rpc"],
)
def test_check_fails_naming_the_stale_files(edit, stale):
    with tempfile.TemporaryDirectory() as tmp:
        root = modified_protos(tmp, edit)
        res = gen_protos("--check", "--proto-dir", root)
        assert res.returncode == 1, res.stdout + res.stderr
        msg = res.stderr
        assert "stubs out of date with " + os.path.join(root, PROTO_REL) in msg, msg
        for name in ["__init__.py", "monitor_pb2.py", "monitor_pb2_grpc.py"]:
            named = os.path.join(COMMITTED, name) in msg
            assert named == (name in stale), f"{name} {'not ' if name in stale else ''}named: {msg}"
        assert "gen_protos.py" in msg and "--proto-dir " + root in msg, msg


def test_regenerating_from_the_modified_protos_makes_the_check_pass_again():
    with tempfile.TemporaryDirectory() as tmp:
        root = modified_protos(tmp, add_message)
        out = os.path.join(tmp, "stubs")
        shutil.copytree(COMMITTED, out)
        assert gen_protos("--check", "--proto-dir", root, "--out", out).returncode == 1
        res = gen_protos("--proto-dir", root, "--out", out)
        assert res.returncode == 0, res.stderr
        res = gen_protos("--check", "--proto-dir", root, "--out", out)
        assert res.returncode == 0, res.stderr
        with open(os.path.join(out, "monitor_pb2.py"), encoding="utf-8") as f:
            assert "DriftProbe" in f.read()


def test_a_missing_stub_is_named():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "stubs")
        shutil.copytree(COMMITTED, out)
        os.remove(os.path.join(out, "monitor_pb2_grpc.py"))
        res = gen_protos("--check", "--out", out)
        assert res.returncode == 1
        assert os.path.join(out, "monitor_pb2_grpc.py") in res.stderr
        assert os.path.join(out, "monitor_pb2.py") not in res.stderr


def test_a_proto_dir_without_the_contract_is_a_clear_error():
    with tempfile.TemporaryDirectory() as tmp:
        res = gen_protos("--check", "--proto-dir", tmp)
        assert res.returncode != 0
        assert "no " + PROTO_REL + " under the proto dir " + tmp in res.stderr


def test_stubs_carry_every_message_of_the_contract():
    from concept_monitor._proto import monitor_pb2 as pb

    names = set(pb.DESCRIPTOR.message_types_by_name)
    assert {"TrainerMessage", "RunStart", "ActivationChunk", "CheckpointEnd", "RunEnd", "ServiceMessage",
            "RunAccepted", "CheckpointAck", "RunEnded", "HealthRequest", "HealthResponse"} <= names
    assert set(pb.DESCRIPTOR.services_by_name["ConceptMonitor"].methods_by_name.keys()) == {"Monitor", "Health"}
