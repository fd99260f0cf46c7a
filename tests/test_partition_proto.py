"""The partition service's generated code (python/llmkg/partition/v1/) is what protoc
makes of proto/llmkg/partition/v1/partition.proto today: regenerated into a temporary
directory, it must equal the checked-in files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTO = Path("llmkg/partition/v1/partition.proto")
GENERATED = ("partition_pb2.py", "partition_pb2.pyi", "partition_pb2_grpc.py")
REGENERATE = (
    "python -m grpc_tools.protoc -Iproto --python_out=python --pyi_out=python "
    f"--grpc_python_out=python proto/{PROTO}"
)


def generate(out: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc", reason="requirements/dev.txt has it")
    args = [
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        str(ROOT / "proto" / PROTO),
    ]
    assert protoc.main(args) == 0, "protoc failed"


def test_checked_in_code_is_protocs_output(tmp_path: Path) -> None:
    generate(tmp_path)
    for name in GENERATED:
        fresh = (tmp_path / PROTO.parent / name).read_text()
        checked_in = (ROOT / "python" / PROTO.parent / name).read_text()
        assert checked_in == fresh, f"{name} is stale: run `{REGENERATE}`"


def test_a_changed_proto_is_caught(tmp_path: Path) -> None:
    proto = tmp_path / "proto"
    (proto / PROTO.parent).mkdir(parents=True)
    source = (ROOT / "proto" / PROTO).read_text()
    (proto / PROTO).write_text(source.replace("uint64 lag = 4;", "uint64 lag = 4;\n  bool x = 5;"))
    out = tmp_path / "out"
    out.mkdir()
    protoc = pytest.importorskip("grpc_tools.protoc")
    args = ["protoc", f"-I{proto}", f"--python_out={out}", str(proto / PROTO)]
    assert protoc.main(args) == 0
    checked_in = (ROOT / "python" / PROTO.parent / "partition_pb2.py").read_text()
    assert (out / PROTO.parent / "partition_pb2.py").read_text() != checked_in


def test_the_generated_modules_import_from_the_package() -> None:
    from llmkg.partition.v1 import partition_pb2, partition_pb2_grpc

    assert partition_pb2.DESCRIPTOR.package == "llmkg.partition.v1"
    assert partition_pb2_grpc.PartitionStub.__module__ == "llmkg.partition.v1.partition_pb2_grpc"
    assert sys.modules["llmkg.partition.v1.partition_pb2"] is partition_pb2
