"""The package installs with pip from its folder, offline (--no-deps, the system's setuptools), and
imports from where pip put it."""

import os
import shutil
import subprocess
import sys

from conftest import PACKAGE


def test_pip_installs_the_package_from_its_folder(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    probe = subprocess.run(
        [sys.executable, "-c",
         "import concept_monitor as cm, concept_monitor._proto.monitor_pb2 as pb; "
         "print(cm.__file__); print(sorted(cm.__all__)); print(pb.TrainerMessage.DESCRIPTOR.full_name)"],
        cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True, text=True, timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    assert lines[0].startswith(str(target))
    assert "watch" in lines[1] and "MonitorClient" in lines[1]
    assert lines[2] == "conceptmonitor.v1.TrainerMessage"
