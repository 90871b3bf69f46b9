"""The committed stubs are what scripts/gen_protos.py makes of protos/ today."""

import filecmp
import os
import subprocess
import sys
import tempfile

from conftest import PACKAGE

COMMITTED = os.path.join(PACKAGE, "concept_monitor", "_proto")


def test_committed_stubs_match_the_proto():
    with tempfile.TemporaryDirectory() as out:
        res = subprocess.run(
            [sys.executable, os.path.join(PACKAGE, "scripts", "gen_protos.py"), out], capture_output=True, text=True
        )
        assert res.returncode == 0, res.stderr
        fresh = sorted(f for f in os.listdir(out) if f.endswith(".py"))
        assert fresh == ["__init__.py", "monitor_pb2.py", "monitor_pb2_grpc.py"]
        drifted = [f for f in fresh if not filecmp.cmp(os.path.join(out, f), os.path.join(COMMITTED, f), shallow=False)]
        assert drifted == [], (
            f"stubs out of date with protos/conceptmonitor/v1/monitor.proto: {drifted}; "
            "run /usr/bin/python3 libs/monitor-client-py/scripts/gen_protos.py"
        )


def test_stubs_carry_every_message_of_the_contract():
    from concept_monitor._proto import monitor_pb2 as pb

    names = set(pb.DESCRIPTOR.message_types_by_name)
    assert {"TrainerMessage", "RunStart", "ActivationChunk", "CheckpointEnd", "RunEnd", "ServiceMessage",
            "RunAccepted", "CheckpointAck", "RunEnded", "HealthRequest", "HealthResponse"} <= names
    assert set(pb.DESCRIPTOR.services_by_name["ConceptMonitor"].methods_by_name.keys()) == {"Monitor", "Health"}
