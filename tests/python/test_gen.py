"""The generated code (src/common/gen) against its .proto files, on the
protobuf runtime at hand, and scripts/gen_proto.py itself."""

import shutil
import subprocess
import sys

import pytest
from google.protobuf.message import DecodeError

from conftest import ROOT
from common.gen.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from common.gen.grpc.health.v1 import health_pb2, health_pb2_grpc

GEN = [sys.executable, str(ROOT / "scripts/gen_proto.py")]


def test_field_numbers_follow_the_proto():
    fields = {f.name: f.number for f in accounts_pb2.Account.DESCRIPTOR.fields}
    assert fields == {"id": 1, "name": 2, "source": 3}
    methods = [m.name for m in accounts_pb2.DESCRIPTOR.services_by_name["Accounts"].methods]
    assert methods == ["GetAccount", "CreateAccount", "ListAccounts"]
    # What the static probe of `cargo xtask verify` decodes: field 1, varint 1.
    assert health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING).SerializeToString() == b"\x08\x01"


def test_negative_int_round_trip():
    req = accounts_pb2.ListAccountsRequest(limit=-7, after_id="x")
    data = req.SerializeToString()
    assert len(data) < 20  # int32 -7 is a 10-byte varint, and it terminates
    assert accounts_pb2.ListAccountsRequest.FromString(data) == req
    assert accounts_pb2.ListAccountsRequest.FromString(data).limit == -7
    low = accounts_pb2.ListAccountsRequest(limit=-(2**31))
    assert accounts_pb2.ListAccountsRequest.FromString(low.SerializeToString()).limit == -(2**31)


def test_repeated_field_keeps_every_value():
    reply = accounts_pb2.ListAccountsResponse(
        accounts=[accounts_pb2.Account(id=str(i), name=f"n{i}") for i in range(5)], next_after_id="4")
    back = accounts_pb2.ListAccountsResponse.FromString(reply.SerializeToString())
    assert [a.id for a in back.accounts] == ["0", "1", "2", "3", "4"]
    assert back == reply


def test_unicode_strings_round_trip():
    a = accounts_pb2.Account(id="ü-1", name="Émilie du Châtelet ✓")
    assert accounts_pb2.Account.FromString(a.SerializeToString()) == a


@pytest.mark.parametrize("cut", [1, 2, 5])
def test_truncated_input_raises(cut):
    data = accounts_pb2.Account(id="42", name="Grace Hopper", source="postgres").SerializeToString()
    with pytest.raises(DecodeError):
        accounts_pb2.Account.FromString(data[:-cut])


def test_length_past_the_end_raises():
    # field 2 (name), length 100, 3 bytes of data
    with pytest.raises(DecodeError):
        accounts_pb2.Account.FromString(b"\x12\x64abc")


def test_unterminated_varint_raises():
    with pytest.raises(DecodeError):
        accounts_pb2.ListAccountsRequest.FromString(b"\x08\xff\xff")


def test_modules_live_in_common_gen():
    assert accounts_pb2.Account.__module__ == "common.gen.accounts.v1.accounts_pb2"
    assert health_pb2_grpc.grpc_dot_health_dot_v1_dot_health__pb2 is health_pb2
    assert accounts_pb2_grpc.accounts_dot_v1_dot_accounts__pb2 is accounts_pb2


needs_protoc = pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc not installed (scripts/setup.sh installs it)")


@needs_protoc
def test_committed_code_is_up_to_date():
    r = subprocess.run([*GEN, "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def copy_repo(tmp_path):
    shutil.copytree(ROOT / "src/proto", tmp_path / "src/proto")
    shutil.copytree(ROOT / "src/common/gen", tmp_path / "src/common/gen",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@needs_protoc
def test_check_lists_stale_files_and_writes_nothing(tmp_path):
    root = copy_repo(tmp_path)
    proto = root / "src/proto/accounts/v1/accounts.proto"
    proto.write_text(proto.read_text().replace("string source = 3;", "string source = 4;"))
    (root / "src/common/gen/extra_pb2.py").write_text("")
    before = (root / "src/common/gen/accounts/v1/accounts_pb2.py").read_bytes()
    r = subprocess.run([*GEN, "--check", "--root", str(root)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "src/common/gen/accounts/v1/accounts_pb2.py: differs",
        "src/common/gen/extra_pb2.py: not generated from src/proto (remove it)",
    ]
    assert (root / "src/common/gen/accounts/v1/accounts_pb2.py").read_bytes() == before

    r = subprocess.run([*GEN, "--root", str(root)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (root / "src/common/gen/extra_pb2.py").exists()
    assert subprocess.run([*GEN, "--check", "--root", str(root)], capture_output=True).returncode == 0
    # Deterministic: the same input gives the same bytes as the committed tree.
    proto.write_text((ROOT / "src/proto/accounts/v1/accounts.proto").read_text())
    assert subprocess.run([*GEN, "--root", str(root)], capture_output=True).returncode == 0
    assert subprocess.run([*GEN, "--check"], capture_output=True).returncode == 0
    for p in (ROOT / "src/common/gen").rglob("*.py"):
        assert (root / "src/common/gen" / p.relative_to(ROOT / "src/common/gen")).read_bytes() == p.read_bytes()


@needs_protoc
def test_protoc_error_is_exit_2(tmp_path):
    root = copy_repo(tmp_path)
    (root / "src/proto/broken.proto").write_text('syntax = "proto3";\nmessage {\n')
    r = subprocess.run([*GEN, "--root", str(root)], capture_output=True, text=True)
    assert r.returncode == 2 and "broken.proto" in r.stderr
    assert (root / "src/common/gen/accounts/v1/accounts_pb2.py").exists()
