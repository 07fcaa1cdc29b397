"""The generated code (src/common/gen) against its .proto files, on the
protobuf runtime at hand, and scripts/gen_proto.py itself."""

import shutil
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError

from common.gen.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from common.gen.grpc.health.v1 import health_pb2, health_pb2_grpc
from conftest import ROOT

GEN = [sys.executable, str(ROOT / "scripts/gen_proto.py")]


def test_field_numbers_follow_the_proto():
    fields = {f.name: f.number for f in accounts_pb2.Account.DESCRIPTOR.fields}
    assert fields == {"id": 1, "name": 2, "source": 3}
    methods = [m.name for m in accounts_pb2.DESCRIPTOR.services_by_name["Accounts"].methods]
    assert methods == ["GetAccount", "CreateAccount", "ListAccounts"]
    # What the static probe of `cargo xtask verify` decodes: field 1, varint 1.
    assert (
        health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING).SerializeToString() == b"\x08\x01"
    )


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
        accounts=[accounts_pb2.Account(id=str(i), name=f"n{i}") for i in range(5)], next_after_id="4"
    )
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


needs_protoc = pytest.mark.skipif(
    shutil.which("protoc") is None, reason="protoc not installed (scripts/setup.sh installs it)"
)


@needs_protoc
def test_committed_code_is_up_to_date():
    r = subprocess.run([*GEN, "--check"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def copy_repo(tmp_path):
    shutil.copytree(ROOT / "src/proto", tmp_path / "src/proto")
    shutil.copytree(ROOT / "src/common/gen", tmp_path / "src/common/gen", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@needs_protoc
def test_check_lists_stale_files_and_writes_nothing(tmp_path):
    root = copy_repo(tmp_path)
    proto = root / "src/proto/accounts/v1/accounts.proto"
    proto.write_text(proto.read_text().replace("string source = 3;", "string source = 4;"))
    (root / "src/common/gen/extra_pb2.py").write_text("")
    before = (root / "src/common/gen/accounts/v1/accounts_pb2.py").read_bytes()
    r = subprocess.run([*GEN, "--check", "--root", str(root)], capture_output=True, text=True, check=False)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "src/common/gen/accounts/v1/accounts_pb2.py: differs",
        "src/common/gen/extra_pb2.py: not generated from src/proto (remove it)",
    ]
    assert (root / "src/common/gen/accounts/v1/accounts_pb2.py").read_bytes() == before

    r = subprocess.run([*GEN, "--root", str(root)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert not (root / "src/common/gen/extra_pb2.py").exists()
    assert subprocess.run([*GEN, "--check", "--root", str(root)], capture_output=True, check=False).returncode == 0
    # Deterministic: the same input gives the same bytes as the committed tree.
    proto.write_text((ROOT / "src/proto/accounts/v1/accounts.proto").read_text())
    assert subprocess.run([*GEN, "--root", str(root)], capture_output=True, check=False).returncode == 0
    assert subprocess.run([*GEN, "--check"], capture_output=True, check=False).returncode == 0
    for p in (ROOT / "src/common/gen").rglob("*.py"):
        assert (root / "src/common/gen" / p.relative_to(ROOT / "src/common/gen")).read_bytes() == p.read_bytes()


@needs_protoc
def test_protoc_error_is_exit_2(tmp_path):
    root = copy_repo(tmp_path)
    (root / "src/proto/broken.proto").write_text('syntax = "proto3";\nmessage {\n')
    r = subprocess.run([*GEN, "--root", str(root)], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "broken.proto" in r.stderr
    assert (root / "src/common/gen/accounts/v1/accounts_pb2.py").exists()


@needs_protoc
def test_out_writes_the_package_elsewhere_and_touches_nothing(tmp_path):
    """--out DIR: what `cargo xtask add-service --grpc` stages into its transaction."""
    root = copy_repo(tmp_path / "repo")
    before = {p: p.read_bytes() for p in (root / "src/common/gen").rglob("*.py")}
    out = tmp_path / "out"
    r = subprocess.run([*GEN, "--root", str(root), "--out", str(out)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.py"))
    assert made == sorted(
        p.relative_to(ROOT / "src/common/gen").as_posix() for p in (ROOT / "src/common/gen").rglob("*.py")
    )
    for rel in made:
        assert (out / rel).read_bytes() == (ROOT / "src/common/gen" / rel).read_bytes()
    assert {p: p.read_bytes() for p in (root / "src/common/gen").rglob("*.py")} == before
    # A folder with something in it is refused.
    r = subprocess.run([*GEN, "--root", str(root), "--out", str(out)], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "not empty" in r.stderr


# --- incremental generation (the cache outside the repository) -------------


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """Each test its own cache folder: never the user's ~/.cache."""
    d = tmp_path_factory.mktemp("gen-cache")
    monkeypatch.setenv("GEN_PROTO_CACHE", str(d))
    return d


def gen(root, *args):
    return subprocess.run([*GEN, "--root", str(root), *args], capture_output=True, text=True, check=False)


def files(d):
    return {
        p.relative_to(d).as_posix(): p.read_bytes()
        for p in d.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


SHARED = 'syntax = "proto3";\npackage billing;\nmessage Money {\n  int64 cents = 1;\n}\n'
INVOICES = (
    'syntax = "proto3";\npackage billing.v1;\nimport "billing/money.proto";\nimport "google/protobuf/empty.proto";\n'
    "message Invoice {\n  Money total = 1;\n}\nservice Invoices {\n  rpc Last(google.protobuf.Empty) returns (Invoice);\n}\n"
)


def add_protos(root, n):
    """n small services, one importing a shared file and a well-known type."""
    (root / "src/proto/billing/v1").mkdir(parents=True, exist_ok=True)
    (root / "src/proto/billing/money.proto").write_text(SHARED)
    (root / "src/proto/billing/v1/invoices.proto").write_text(INVOICES)
    tmpl = (ROOT / "xtask/templates/service.proto.tmpl").read_text()
    for i in range(n):
        name = f"svc-{i}"
        pkg = name.replace("-", "_")
        (root / f"src/proto/{pkg}/v1").mkdir(parents=True)
        text = tmpl.replace("{{name}}", name).replace("{{proto_pkg}}", pkg).replace("{{service_class}}", f"Svc{i}")
        (root / f"src/proto/{pkg}/v1/{pkg}.proto").write_text(text)


@needs_protoc
def test_hand_edited_generated_file_is_stale_with_a_warm_cache(tmp_path):
    root = copy_repo(tmp_path)
    assert gen(root, "--check").returncode == 0  # warms the cache
    pb = root / "src/common/gen/accounts/v1/accounts_pb2.py"
    pb.write_bytes(pb.read_bytes().replace(b"DESCRIPTOR", b"DESCRIPTOR ", 1))
    init = root / "src/common/gen/grpc/health/__init__.py"
    init.write_text(INIT_EDIT := "# edited\n")
    r = gen(root, "--check")
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "src/common/gen/accounts/v1/accounts_pb2.py: differs",
        "src/common/gen/grpc/health/__init__.py: differs",
    ]
    assert init.read_text() == INIT_EDIT  # --check writes nothing
    assert gen(root).returncode == 0
    assert files(root / "src/common/gen") == files(ROOT / "src/common/gen")


@needs_protoc
def test_an_edited_import_makes_its_importer_stale(tmp_path):
    root = copy_repo(tmp_path)
    add_protos(root, 0)
    assert gen(root).returncode == 0
    assert gen(root, "--check").returncode == 0
    importer = root / "src/common/gen/billing/v1/invoices_pb2.py"
    before = importer.read_bytes()
    # Money moves to package billing.v1: invoices.proto is unchanged, but
    # `Money` in it now resolves to .billing.v1.Money, so its code changes.
    (root / "src/proto/billing/money.proto").write_text(SHARED.replace("package billing;", "package billing.v1;"))
    r = gen(root, "--check")
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "src/common/gen/billing/money_pb2.py: differs",
        "src/common/gen/billing/v1/invoices_pb2.py: differs",
    ]
    assert gen(root, "--check", "--full").stdout == r.stdout
    assert gen(root).returncode == 0
    assert importer.read_bytes() != before and b".billing.v1.Money" in importer.read_bytes()


@needs_protoc
def test_incremental_and_full_give_the_same_bytes(tmp_path):
    root = copy_repo(tmp_path / "repo")
    add_protos(root, 6)
    # Incremental, one step at a time: each run reuses what it can.
    for i in range(6, 9):
        add_protos_one = root / f"src/proto/extra_{i}/v1"
        add_protos_one.mkdir(parents=True)
        (add_protos_one / f"extra_{i}.proto").write_text(
            f'syntax = "proto3";\npackage extra_{i}.v1;\nimport "svc_{i - 6}/v1/svc_{i - 6}.proto";\n'
            f"message E {{ svc_{i - 6}.v1.PingRequest r = 1; }}\n"
        )
        r = gen(root)
        assert r.returncode == 0, r.stderr
    assert gen(root, "--check").returncode == 0
    full = tmp_path / "full"
    r = gen(root, "--full", "--out", str(full))
    assert r.returncode == 0, r.stderr
    assert files(full) == files(root / "src/common/gen")
    assert gen(root, "--check", "--full").returncode == 0
    # The generated package imports and knows its types.
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from common.gen.extra_7.v1 import extra_7_pb2 as e; print(e.E.DESCRIPTOR.fields[0].message_type.full_name)",
        ],
        cwd=root / "src",
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.stdout.strip() == "svc_1.v1.PingRequest", r.stderr


@needs_protoc
def test_a_damaged_or_foreign_cache_entry_is_a_miss(tmp_path, own_cache):
    root = copy_repo(tmp_path)
    assert gen(root, "--check").returncode == 0
    entries = sorted(p for p in own_cache.rglob("*") if p.is_file())
    assert len(entries) == 2  # accounts and health
    pb = root / "src/common/gen/accounts/v1/accounts_pb2.py"
    pb.write_text(pb.read_text() + "# injected\n")
    forged = sha256(pb.read_bytes()).hexdigest()
    for e in entries:
        text = e.read_text()
        if "accounts_pb2.py" in text:
            # The recorded hash swapped for the edited file's, without a new
            # checksum (a damaged entry), then truncated: both are misses.
            good = next(line for line in text.splitlines() if line.startswith("out\taccounts/v1/accounts_pb2.py"))
            e.write_text(text.replace(good, f"out\taccounts/v1/accounts_pb2.py\t{forged}"))
            assert gen(root, "--check").stdout.splitlines() == ["src/common/gen/accounts/v1/accounts_pb2.py: differs"]
            e.write_text(text[: len(text) // 2])
            assert gen(root, "--check").returncode == 1
            health = next(x for x in entries if x != e)
            e.write_bytes(health.read_bytes())  # another file's entry under this key
            assert gen(root, "--check").returncode == 1
    # A record planted in the repository is just an extra file.
    (root / "src/common/gen/MANIFEST").write_text(f"accounts/v1/accounts_pb2.py {forged}\n")
    r = gen(root, "--check")
    assert r.stdout.splitlines() == [
        "src/common/gen/MANIFEST: not generated from src/proto (remove it)",
        "src/common/gen/accounts/v1/accounts_pb2.py: differs",
    ]
    assert gen(root).returncode == 0
    assert files(root / "src/common/gen") == files(ROOT / "src/common/gen")


@needs_protoc
def test_no_cache_and_an_unwritable_cache_still_work(tmp_path, monkeypatch):
    root = copy_repo(tmp_path)
    monkeypatch.setenv("GEN_PROTO_CACHE", "")
    assert gen(root, "--check").returncode == 0
    monkeypatch.setenv("GEN_PROTO_CACHE", "/proc/no-such-cache")
    assert gen(root, "--check").returncode == 0


@needs_protoc
def test_plan_names_the_changes_of_a_planned_proto_set(tmp_path):
    """--plan/--overlay/--drop: what add-service --grpc and remove-service stage."""
    root = copy_repo(tmp_path / "repo")
    before = files(root)
    overlay = tmp_path / "overlay"
    (overlay / "ledger/v1").mkdir(parents=True)
    (overlay / "ledger/v1/ledger.proto").write_text(
        'syntax = "proto3";\npackage ledger.v1;\nmessage Entry { int64 id = 1; }\n'
    )
    out = tmp_path / "out"
    r = gen(root, "--plan", str(out), "--overlay", str(overlay), "--drop", "src/proto/accounts/v1/accounts.proto")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "src/common/gen/accounts/__init__.py: not generated from src/proto (remove it)",
        "src/common/gen/accounts/v1/__init__.py: not generated from src/proto (remove it)",
        "src/common/gen/accounts/v1/accounts_pb2.py: not generated from src/proto (remove it)",
        "src/common/gen/accounts/v1/accounts_pb2_grpc.py: not generated from src/proto (remove it)",
        "src/common/gen/ledger/__init__.py: missing",
        "src/common/gen/ledger/v1/__init__.py: missing",
        "src/common/gen/ledger/v1/ledger_pb2.py: missing",
        "src/common/gen/ledger/v1/ledger_pb2_grpc.py: missing",
    ]
    assert b"common.gen.ledger.v1.ledger_pb2" in (out / "ledger/v1/ledger_pb2.py").read_bytes()
    assert files(root) == before
    # A dropped file that another still imports is an error.
    (overlay / "ledger/v1/ledger.proto").write_text(
        'syntax = "proto3";\npackage ledger.v1;\nimport "accounts/v1/accounts.proto";\nmessage Entry { accounts.v1.Account a = 1; }\n'
    )
    r = gen(
        root,
        "--plan",
        str(tmp_path / "out2"),
        "--overlay",
        str(overlay),
        "--drop",
        "src/proto/accounts/v1/accounts.proto",
    )
    assert r.returncode == 2 and "accounts/v1/accounts.proto" in r.stderr, r.stderr


@needs_protoc
def test_manifest_names_every_file_a_current_check_read(tmp_path):
    """--manifest: what `cargo xtask check` stamps (plan/proto_stamp.rs)."""
    root = copy_repo(tmp_path / "repo")
    add_protos(root, 1)  # one imports google/protobuf/empty.proto
    assert gen(root).returncode == 0
    man = tmp_path / "manifest"
    assert gen(root, "--check", "--manifest", str(man)).returncode == 0
    got = dict(reversed(line.split("\t")) for line in man.read_text().splitlines())
    tree = {f"src/common/gen/{p}" for p in files(root / "src/common/gen")} | {
        f"src/proto/{p}" for p in files(root / "src/proto")
    }
    assert {p for p in got if not p.startswith("/")} == tree
    for p, h in got.items():
        assert sha256((root / p if not p.startswith("/") else Path(p)).read_bytes()).hexdigest() == h, p
    assert [p for p in got if p.startswith("/")] == [p for p in got if p.endswith("/google/protobuf/empty.proto")] != []
    # Stale: no manifest.
    man.unlink()
    (root / "src/common/gen/extra_pb2.py").write_text("")
    assert gen(root, "--check", "--manifest", str(man)).returncode == 1 and not man.exists()


@needs_protoc
def test_a_plan_that_only_adds_makes_only_the_added_files_and_the_same_bytes(tmp_path):
    """--plan with an overlay that only adds .proto files (what `add-service
    --grpc` runs): only their code is made and compared; the full plan
    when an added file could change the others."""
    root = copy_repo(tmp_path / "repo")
    overlay = tmp_path / "overlay"
    (overlay / "ledger/v1").mkdir(parents=True)
    (overlay / "ledger/v1/ledger.proto").write_text(
        'syntax = "proto3";\npackage ledger.v1;\nimport "accounts/v1/accounts.proto";\n'
        "message Entry { accounts.v1.Account a = 1; }\n"
    )
    fast, full = tmp_path / "fast", tmp_path / "full"
    r = gen(root, "--plan", str(fast), "--overlay", str(overlay))
    assert r.returncode == 0, r.stderr
    assert gen(root, "--plan", str(full), "--overlay", str(overlay), "--full").stdout == r.stdout
    assert (
        files(fast) == files(full)
        and b"from common.gen.accounts.v1 import accounts_pb2" in (fast / "ledger/v1/ledger_pb2.py").read_bytes()
    )
    # The added service's plan leaves the rest alone: a stale file elsewhere is check's business...
    (root / "src/common/gen/extra_pb2.py").write_text("")
    r = gen(root, "--plan", str(tmp_path / "fast2"), "--overlay", str(overlay))
    assert "extra_pb2" not in r.stdout
    assert gen(root, "--check").returncode == 1
    # ...but an added file that shares a module name with an existing one,
    # or replaces one, gets the full plan.
    (overlay / "accounts/v1").mkdir(parents=True)
    (overlay / "accounts/v1/accounts.proto").write_text(
        'syntax = "proto3";\npackage accounts.v1;\nmessage Account { string id = 1; }\n'
    )
    r = gen(root, "--plan", str(tmp_path / "fast3"), "--overlay", str(overlay))
    assert "src/common/gen/extra_pb2.py: not generated from src/proto (remove it)" in r.stdout.splitlines()
    assert "src/common/gen/accounts/v1/accounts_pb2.py: differs" in r.stdout.splitlines()


def test_module_paths_are_every_path_of_one_module_name():
    sys.path.insert(0, str(ROOT / "scripts"))
    import gen_proto

    paths = gen_proto.module_paths("a_b.v1")
    assert paths is not None
    assert sorted(paths) == ["a-b.v1.proto", "a-b/v1.proto", "a_b.v1.proto", "a_b/v1.proto"]
    assert all(gen_proto.module_of(p) == "a_b.v1_pb2" for p in paths)
    assert gen_proto.module_paths("a_b_c_d_e.f.g.h.i.j") is None
