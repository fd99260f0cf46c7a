"""Acknowledged allocations survive kill -9 of the engine's process, cycle after cycle,
and each is found by search with its own embedding as the top hit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from engine_writer import DIM, embedding_of

from llmkg.engine import AllocationEngine, EngineConfig

HERE = Path(__file__).parent


def test_acknowledged_allocations_survive_kill_9(tmp_path: Path) -> None:
    acked: dict[int, tuple[int, int, int]] = {}
    for run in range(3):
        child = subprocess.Popen(
            [sys.executable, str(HERE / "engine_writer.py"), str(tmp_path), str(run)],
            stdout=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent / "python")]),
            },
        )
        assert child.stdout is not None
        for count, line in enumerate(child.stdout, 1):
            _, node_id, r, t, i = line.split()
            acked[int(node_id)] = (int(r), int(t), int(i))
            if count >= 150:
                break
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        config = EngineConfig(
            data_directory=tmp_path, dim=DIM, direct_threshold=200, checkpoint_interval=0
        )
        with AllocationEngine(config) as engine:
            missing = [n for n in acked if engine.get(n) is None]
            assert not missing, f"cycle {run}: acknowledged allocations lost: {missing[:10]}"
            for node_id, (r, t, i) in acked.items():
                top = engine.search(embedding=embedding_of(r, t, i), k=1)
                assert top[0].node_id == node_id, (
                    f"cycle {run}: node {node_id} is not its own top hit"
                )
