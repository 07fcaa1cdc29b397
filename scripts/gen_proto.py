#!/usr/bin/env python3
"""Generates the Python messages and gRPC stubs of src/proto into src/common/gen.

    python3 scripts/gen_proto.py [--check] [--full] [--root DIR] [--out DIR]
    python3 scripts/gen_proto.py --plan DIR [--overlay DIR] [--drop REL]... [--base-current]

Without --check: brings src/common/gen/ up to date with every
src/proto/**/*.proto and replaces the folder as a whole (a crash leaves the
old one or the new one, never a mix). With --check: writes nothing and
lists the stale files (changed, missing or extra), one `path: why` line
each. --root is the repository (default: this script's parent folder's
parent). --out DIR writes the whole package into DIR (new or empty) instead
and compares nothing. --plan DIR is what `cargo xtask add-service --grpc`
and `remove-service` call: the .proto files are those of src/proto with the
files of --overlay (a folder laid out like src/proto) added or replacing
theirs and the --drop ones (paths under src/proto) removed; it prints the
`path: why` lines of src/common/gen against that planned set, writes the new
content of each missing or differing file under DIR, and exits 0.

Two options serve `cargo xtask`'s shortcuts (plan/proto_stamp.rs), which
skip this script while nothing it reads changed:
--manifest FILE (with --check): when the code is current, writes one
`sha256<TAB>path` line for every file the check read and found right (the
generated files and .proto files as repository paths, the imports found
outside src/proto as absolute paths), so the caller can stamp exactly them.
--base-current (with --plan): the caller has proved src/common/gen current
for src/proto, and the overlay only ADDS .proto files; then protoc runs for
those alone and only their files are compared, not the whole tree. When an
added file could change what the others generate (it replaces one, shares
a module name with one, or shadows an import found outside src/proto), the
option is ignored and the plan is the full one.

Exit codes: 0 up to date / written / planned; 1 stale (--check); 2 failure
(no protoc, the wrong protoc version, a protoc error).

The generation is one deterministic command, run from the repository root:

    protoc -I src/proto [-I /usr/include] --python_out=OUT --grpc_out=OUT \\
        --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin <.proto files, sorted>

(the second -I is protoc's own default include folder of the well-known
types, named so that this script resolves imports exactly as protoc does)
followed by two rewrites so the output works as the package `common.gen`
inside the ./src build context every service image copies (/app/common):
imports between generated modules (`from accounts.v1 import accounts_pb2`)
become `from common.gen.accounts.v1 import ...` (a top-level `grpc.health`
package would shadow the grpc library), and every folder gets an
`__init__.py` (one comment line).

Incremental: protoc's output for one .proto depends only on that file, the
files it imports (transitively; the import list is protoc's own, read from
its descriptor set), where each import resolved, the tools and this script.
After every protoc run the script records, in a cache OUTSIDE the
repository (see below), for each generated .proto: those inputs (path,
where found, content hash) and the hashes of its output files. A later run
takes a .proto's files from src/common/gen without running protoc only when
all its recorded inputs are unchanged AND the files on disk still have the
recorded hashes; every other .proto is regenerated, all in one protoc call.
--full ignores the cache and regenerates everything (CI runs it); the
tests prove both give the same bytes.

Why the cache is not in the repository: a record committed next to the
generated code could be edited together with a hand-edited generated file
(by a pull request, a bad merge) and would then vouch for it. This cache is
written only by this script, right after protoc made the files it
describes, and keyed by the tools' and this script's own hashes; a damaged
or foreign entry (bad checksum, wrong header, unknown inputs) is a miss,
never a hit. It lives in $GEN_PROTO_CACHE, else $XDG_CACHE_HOME/xtask-gen-proto,
else ~/.cache/xtask-gen-proto; GEN_PROTO_CACHE="" (or a folder that cannot
be written) turns it off, which only makes runs slower.

Why these tools: Debian bookworm's `protobuf-compiler` (protoc 3.21.12) and
`protobuf-compiler-grpc` (grpc_python_plugin 1.51.1). protoc 3.21 writes the
builder-style code that every runtime from protobuf 3.20 (python 4.21) on
accepts: Debian's python3-protobuf 3.21 in the stand-in images and the
protobuf 5.x pinned for the official python image. Debian's
python3-grpc-tools is NOT used: it bundles protoc 3.5.1, whose descriptor-style
output fails on the upb runtime of protobuf >= 4.21 ("Descriptors cannot be
created directly"). The 1.51 plugin's stubs carry no grpcio version check, so
they run on grpcio 1.51 (Debian) and newer (PyPI). The output depends on the
protoc version, so other versions are refused: the generated bytes (and
--check) would differ from machine to machine. The cache key holds the
`protoc --version` line and the hashes of the protoc and plugin binaries; an
upgrade of their shared libraries alone is not seen: run --full after one.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

PROTO_DIR = Path("src/proto")
OUT_DIR = Path("src/common/gen")
PACKAGE = "common.gen"
PROTOC = "protoc"
PLUGIN = "/usr/bin/grpc_python_plugin"
PROTOC_VERSION = "libprotoc 3.21."
INIT = "# Generated by scripts/gen_proto.py from src/proto. DO NOT EDIT.\n"
INSTALL_HINT = "install them with `apt-get install protobuf-compiler protobuf-compiler-grpc` (Debian bookworm)"
EXTRA = "not generated from src/proto (remove it)"

# Where protoc finds an import: (folder, or "proto" for src/proto and the
# overlay; content hash; module flag: "-", or whether the module name is ours).
Where = tuple[str, str, str]
# A cache entry's input (path, *Where) and output (generated file, hash).
CachedIn = tuple[str, str, str, str]
CachedOut = tuple[str, str]
# The package as it must be: generated file -> bytes, or None for "the file
# in src/common/gen is it" (its recorded hash checked).
Package = dict[str, bytes | None]


class Failure(Exception):
    pass


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def check_tools() -> str:
    """Refuses missing or wrong tools; returns their fingerprint for the cache key."""
    try:
        out = subprocess.run([PROTOC, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise Failure(f"cannot run `{PROTOC} --version` ({e}); {INSTALL_HINT}") from e
    if not out.startswith(PROTOC_VERSION):
        raise Failure(
            f"`{PROTOC} --version` says {out!r}, this script wants {PROTOC_VERSION}x "
            f"(the committed code was made with it); {INSTALL_HINT}"
        )
    if not os.access(PLUGIN, os.X_OK):
        raise Failure(f"{PLUGIN} is missing; {INSTALL_HINT}")
    protoc = shutil.which(PROTOC)
    if protoc is None:
        raise Failure(f"`{PROTOC}` is not on PATH; {INSTALL_HINT}")
    parts = [out]
    for p in (protoc, PLUGIN, __file__):
        parts.append(f"{p} {sha(Path(p).read_bytes())}")
    return "\n".join(parts)


def default_include() -> list[Path]:
    """protoc's own include folder (the well-known types), found as protoc
    3.21 finds it: include/ or ../include/ beside the real binary."""
    exe = Path(os.path.realpath(shutil.which(PROTOC) or PROTOC)).parent
    for d in (exe / "include", exe.parent / "include"):
        if (d / "google/protobuf/descriptor.proto").is_file():
            return [d]
    return []


# --- protoc's naming of Python modules and files ---------------------------


def stem(rel: str) -> str:
    return rel[: -len(".proto")].replace("-", "_")


def module_of(rel: str) -> str:
    """protoc's python ModuleName(): a/b-c.proto -> a.b_c_pb2."""
    return stem(rel).replace("/", ".") + "_pb2"


def outputs_of(rel: str) -> tuple[str, str]:
    """The files protoc (--python_out) and the plugin (--grpc_out) write for `rel`."""
    return (module_of(rel).replace(".", "/") + ".py", stem(rel) + "_pb2_grpc.py")


# --- the descriptor set: protoc's own import lists --------------------------


def varint(b: bytes, i: int) -> tuple[int, int]:
    """The varint at b[i] and the index after it."""
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return n, i


def fields(b: bytes) -> Iterator[tuple[int, bytes]]:
    """(number, value) of a protobuf message's length-delimited fields; the
    other wire types are skipped. Hand-written: stdlib only."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        wire = key & 7
        if wire == 0:
            _, i = varint(b, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = varint(b, i)
            yield key >> 3, b[i : i + n]
            i += n
        else:
            raise Failure(f"descriptor set: unexpected wire type {wire}")


def imports_by_file(descriptor_set: bytes) -> dict[str, list[str]]:
    """FileDescriptorSet.file[*]: name (1) -> dependency (3), as written."""
    out: dict[str, list[str]] = {}
    for num, fd in fields(descriptor_set):
        if num == 1:
            name = ""  # protoc always sets it
            deps: list[str] = []
            for n, v in fields(fd):
                if n == 1:
                    name = v.decode()
                elif n == 3:
                    deps.append(v.decode())
            out[name] = deps
    return out


# --- the cache --------------------------------------------------------------

CACHE_HEADER = "gen_proto cache 1"


class Cache:
    """One entry per (tools, .proto path, content): the inputs protoc read
    for it and the hashes of the files it made. See the module docstring."""

    def __init__(self, tools: str) -> None:
        self.dir: Path | None
        env = os.environ.get("GEN_PROTO_CACHE")
        if env is not None:
            self.dir = Path(env) if env else None
        else:
            base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            self.dir = Path(base) / "xtask-gen-proto"
        self.tools = tools

    def path(self, rel: str, content_hash: str) -> str | None:
        if self.dir is None:
            return None
        k = sha(f"{CACHE_HEADER}\n{self.tools}\n{rel}\n{content_hash}".encode())
        return f"{self.dir}/{k[:2]}/{k}"

    def get(self, rel: str, content_hash: str) -> tuple[list[CachedIn], list[CachedOut]] | None:
        """(inputs [(path, where, hash, flag)], outputs [(rel, hash)]) or None."""
        p = self.path(rel, content_hash)
        if p is None:
            return None
        try:
            with open(p, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            return None
        if not text:
            return None
        body, _, last = text.rstrip("\n").rpartition("\n")
        lines = body.split("\n")
        if lines[0] != CACHE_HEADER or last != f"sum {sha(body.encode())}":
            return None  # torn, damaged or another format: a miss
        ins: list[CachedIn] = []
        outs: list[CachedOut] = []
        for line in lines[1:]:
            kind, *rest = line.split("\t")
            if kind == "in" and len(rest) == 4:
                ins.append((rest[0], rest[1], rest[2], rest[3]))
            elif kind == "out" and len(rest) == 2:
                outs.append((rest[0], rest[1]))
            else:
                return None
        if not any(i[0] == rel and i[1] == "proto" and i[2] == content_hash for i in ins):
            return None
        return ins, outs

    def put(self, rel: str, content_hash: str, ins: list[CachedIn], outs: list[CachedOut]) -> None:
        where = self.path(rel, content_hash)
        if where is None or any("\t" in x or "\n" in x for t in [*ins, *outs] for x in t):
            return
        body = "\n".join([CACHE_HEADER, *("\t".join(("in", *i)) for i in ins), *("\t".join(("out", *o)) for o in outs)])
        p = Path(where)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{p.name}.{os.getpid()}")
            tmp.write_text(f"{body}\nsum {sha(body.encode())}\n", encoding="utf-8")
            os.replace(tmp, p)  # readers see the old entry or the whole new one
        except OSError:
            pass  # no cache: only slower


# --- the planned inputs -----------------------------------------------------


class Inputs:
    """The .proto set to generate from (src/proto, or src/proto with a
    planned change), and where protoc finds each import."""

    def __init__(self, root: Path, overlay: Path | None = None, drop: Iterable[str] = ()) -> None:
        self.root = root
        self.overlay = overlay
        base = root / PROTO_DIR
        names = set(files_under(base, ".proto"))
        self.base = set(names)
        self.overlaid = set(files_under(overlay, ".proto")) if overlay else set()
        names |= self.overlaid
        self.dropped = {d.removeprefix(f"{PROTO_DIR.as_posix()}/") for d in drop}
        self.names = sorted(names - self.dropped)
        if not self.names:
            raise Failure(f"{base}: no .proto files")
        self.include = default_include()
        self.modules = {module_of(r) for r in self.names}
        self._hash: dict[str, Where | None] = {}
        self.external: dict[str, str] = {}  # imports read outside src/proto: path -> hash

    def file(self, rel: str) -> str:
        if self.overlay and os.path.isfile(f"{self.overlay}/{rel}"):
            return f"{self.overlay}/{rel}"
        return f"{self.root}/{PROTO_DIR}/{rel}"

    def where(self, rel: str) -> Where | None:
        """(where, content hash, module flag) as protoc would resolve `rel`,
        or None when it is nowhere."""
        if rel not in self._hash:
            got: tuple[str, str] | None
            if rel in self.names:
                got = ("proto", self.file(rel))
            else:
                got = next(((str(d), f"{d}/{rel}") for d in self.include if os.path.isfile(f"{d}/{rel}")), None)
            if got is None:
                self._hash[rel] = None
            else:
                # An import outside src/proto is rewritten when a module of
                # ours has its name (see rewrite), so that is an input too.
                flag = "-" if got[0] == "proto" else str(module_of(rel) in self.modules)
                with open(got[1], "rb") as f:
                    found = (got[0], sha(f.read()), flag)
                self._hash[rel] = found
                if got[0] != "proto":
                    self.external[got[1]] = found[1]
        return self._hash[rel]

    def proto_hash(self, rel: str) -> str:
        """The content hash of `rel`, one of the .proto files of the set."""
        w = self.where(rel)
        if w is None:
            raise Failure(f"{rel}: vanished while read")
        return w[1]

    def proto_path(self) -> list[str | Path]:
        """The -I folders of the protoc command for this set: the overlay
        first, so its files win. A dropped file stays findable in src/proto;
        generate() refuses any that protoc read."""
        return [*([self.overlay] if self.overlay else []), self.root / PROTO_DIR, *self.include]


# --- generation -------------------------------------------------------------


def run_protoc(inputs: Inputs, files: list[str], out: Path, tmp: Path) -> dict[str, list[str]]:
    """Generates `files` (rewrites not applied yet) into `out`; returns
    protoc's import list of every file it read."""
    ds = tmp / "descriptors.pb"
    cmd = [
        PROTOC,
        *(f"-I{d}" for d in inputs.proto_path()),
        f"--python_out={out}",
        f"--grpc_out={out}",
        f"--plugin=protoc-gen-grpc={PLUGIN}",
        f"--descriptor_set_out={ds}",
        "--include_imports",
        *files,
    ]
    r = subprocess.run(cmd, cwd=inputs.root, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise Failure(f"protoc failed ({r.returncode}):\n{r.stderr.strip()}")
    return imports_by_file(ds.read_bytes())


def closure(rel: str, imports: dict[str, list[str]]) -> list[str]:
    seen: set[str] = set()
    todo = [rel]
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo.extend(imports.get(f, []))
    return sorted(seen)


def additions_only(inputs: Inputs) -> list[str] | None:
    """--base-current: the added .proto files when the planned set only adds
    files that cannot change what the others generate, else None. protoc's
    output for a file depends on it and its imports only; none of src/proto
    can import an added file unless that import resolved before outside
    src/proto (then the added file shadows it), and the rewrite of an import
    found outside src/proto depends on whether its module name is one of
    ours. So: nothing dropped or replaced, no module name shared with an
    existing file, and no file of an include folder with the module name of
    an added one."""
    new = sorted(inputs.overlaid - inputs.base)
    if inputs.dropped or not new or len(new) != len(inputs.overlaid):
        return None
    mods = {module_of(r) for r in inputs.base}
    for rel in new:
        if module_of(rel) in mods:
            return None
        paths = module_paths(module_of(rel)[: -len("_pb2")])
        if paths is None or any(os.path.exists(f"{d}/{p}") for d in inputs.include for p in paths):
            return None
    return new


def module_paths(dotted: str) -> list[str] | None:
    """Every .proto path whose module_of() is `dotted`_pb2 (each `.` was `/`
    or `.`, each `_` was `_` or `-`); None past 256 of them."""
    free = [i for i, c in enumerate(dotted) if c in "._"]
    if len(free) > 8:
        return None
    out = []
    for bits in range(1 << len(free)):
        s = list(dotted)
        for k, i in enumerate(free):
            if bits >> k & 1:
                s[i] = "/" if s[i] == "." else "-"
        out.append("".join(s) + ".proto")
    return out


def generate(
    inputs: Inputs, gen: Path, full: bool, cache: Cache, only: list[str] | None = None
) -> tuple[Package, list[str], dict[str, str]]:
    """The package as it must be: {rel: bytes or None}, None meaning "the
    file in `gen` is it" (its recorded hash checked), the .proto files
    protoc ran for, and {rel: hash} of the files taken from `gen`. With
    `only` (a list of .proto files), the package of those files alone: the
    other files are known to be current (--base-current)."""
    names = inputs.names if only is None else only
    hashes = {rel: inputs.proto_hash(rel) for rel in names}
    # Two .proto files with one output name: protoc must see them together
    # to report it, so no reuse.
    outs = [o for r in inputs.names for o in outputs_of(r)]
    full = full or len(set(outs)) != len(outs)
    want: Package = {}
    redo: list[str] = []
    kept: dict[str, str] = {}
    mods: set[str] = set() if only is None else {module_of(r) for r in inputs.base}
    for rel in names:
        hit = None if full else cache.get(rel, hashes[rel])
        if (
            hit
            and all(inputs.where(p) == (w, h, f) for p, w, h, f in hit[0])
            and all(same(f"{gen}/{o}", h) for o, h in hit[1])
        ):
            want.update((o, None) for o, _ in hit[1])
            kept.update(hit[1])
            mods.update(o[:-3].replace("/", ".") for o, _ in hit[1] if o.endswith("_pb2.py"))
        else:
            redo.append(rel)
    if redo:
        with tempfile.TemporaryDirectory(prefix="gen_proto-") as t:
            tmp = Path(t)
            out = tmp / "out"
            out.mkdir()
            imports = run_protoc(inputs, redo, out, tmp)
            bad = sorted(inputs.dropped & set(imports))
            if bad:
                raise Failure(f"{bad[0]} is removed by this change but still imported; remove the import too")
            made = {p.relative_to(out).as_posix(): p for p in out.rglob("*.py")}
            mods.update(m[:-3].replace("/", ".") for m in made if m.endswith("_pb2.py"))
            fresh = {m: rewrite(p.read_text(), mods, p).encode() for m, p in sorted(made.items())}
            want.update(fresh)
            owned = {o: r for r in redo for o in outputs_of(r) if o in made}
            if set(owned) == set(made):  # every file accounted for: cache them
                for rel in redo:
                    read = closure(rel, imports)
                    found = [(f, *w) for f in read if (w := inputs.where(f)) is not None]
                    if len(found) == len(read):
                        got = [(o, sha(fresh[o])) for o in outputs_of(rel) if o in made]
                        cache.put(rel, hashes[rel], found, got)
    dirs = {""}
    for rel in want:
        d = rel
        while "/" in d:
            d = d.rsplit("/", 1)[0]
            dirs.add(d)
    for d in dirs:
        want[f"{d}/__init__.py" if d else "__init__.py"] = INIT.encode()
    return want, redo, kept


def same(path: str, h: str) -> bool:
    try:
        with open(path, "rb") as f:
            return sha(f.read()) == h
    except OSError:
        return False


# The generated lines that name other generated modules (protoc 3.21 and
# grpc_python_plugin 1.51 write exactly these shapes).
FROM_IMPORT = re.compile(r"^from ([\w.]+) import (\w+_pb2) as (\w+)$", re.MULTILINE)
PLAIN_IMPORT = re.compile(r"^import (\w+_pb2) as (\w+)$", re.MULTILINE)
BUILD_TOP = re.compile(r"^(_builder\.BuildTopDescriptorsAndMessages\(DESCRIPTOR, )'([\w.]+)'", re.MULTILINE)


def rewrite(text: str, modules: set[str], path: Path) -> str:
    def from_import(m: re.Match[str]) -> str:
        if f"{m[1]}.{m[2]}" not in modules:
            return m[0]  # not ours, e.g. google.protobuf's well-known types
        return f"from {PACKAGE}.{m[1]} import {m[2]} as {m[3]}"

    def plain_import(m: re.Match[str]) -> str:
        return f"from {PACKAGE} import {m[1]} as {m[2]}" if m[1] in modules else m[0]

    def build_top(m: re.Match[str]) -> str:
        if m[2] not in modules:
            raise Failure(f"{path}: unexpected module name {m[2]!r} in generated code")
        return f"{m[1]}'{PACKAGE}.{m[2]}'"

    text = FROM_IMPORT.sub(from_import, text)
    text = PLAIN_IMPORT.sub(plain_import, text)
    return BUILD_TOP.sub(build_top, text)


def files_under(d: str | Path, suffix: str = "") -> list[str]:
    """Relative paths (with /) of the files under `d` ending in `suffix`,
    Python's caches skipped. os.scandir: pathlib's rglob costs 3x as much."""
    out: list[str] = []
    todo = [("", str(d))]
    while todo:
        prefix, path = todo.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=True):
                if e.name != "__pycache__":
                    todo.append((f"{prefix}{e.name}/", e.path))
            elif e.name.endswith(suffix):
                out.append(prefix + e.name)
    return out


def tree(d: Path) -> set[str]:
    return set(files_under(d))


def stale(want: Package, old: Path, whole: bool = True) -> list[tuple[str, str]]:
    """Files of `old` that differ from `want`: (path, why), sorted. Not
    `whole`: only the files of `want` are looked at (--base-current)."""
    if whole:
        have = tree(old) if old.is_dir() else set()
    else:
        have = {p for p in want if os.path.isfile(f"{old}/{p}")}
    out = [(p, "missing") for p in want.keys() - have] + [(p, EXTRA) for p in have - want.keys()]
    for p in want.keys() & have:
        if want[p] is not None:
            try:
                with open(f"{old}/{p}", "rb") as f:
                    differs = f.read() != want[p]
                if differs:
                    out.append((p, "differs"))
            except OSError:
                out.append((p, "differs"))
    return sorted(out)


def materialize(want: Package, gen: Path, dest: Path, link: bool) -> None:
    """Writes the package `want` into `dest`, taking reused files from `gen`
    (hard links when `link`: the old folder is dropped right after)."""
    for rel, b in sorted(want.items()):
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if b is not None:
            p.write_bytes(b)
        elif link:
            try:
                os.link(gen / rel, p)
            except OSError:
                shutil.copyfile(gen / rel, p)
        else:
            shutil.copyfile(gen / rel, p)


def write_manifest(path: Path, inputs: Inputs, want: Package, kept: dict[str, str]) -> None:
    """--manifest: `sha256<TAB>path` of every file a current check read."""
    lines = [f"{inputs.proto_hash(r)}\t{PROTO_DIR.as_posix()}/{r}" for r in inputs.names]
    lines += [f"{kept[p] if b is None else sha(b)}\t{OUT_DIR.as_posix()}/{p}" for p, b in sorted(want.items())]
    lines += [f"{h}\t{p}" for p, h in sorted(inputs.external.items())]
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 listing stale files")
    ap.add_argument("--full", action="store_true", help="run protoc for every .proto (ignore the cache)")
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="the repository")
    ap.add_argument("--out", type=Path, help="write the package into this new or empty folder; compare nothing")
    ap.add_argument("--plan", type=Path, help="print the changes a planned .proto set makes; write new files here")
    ap.add_argument(
        "--overlay", type=Path, help="with --plan: .proto files added or replaced (laid out like src/proto)"
    )
    ap.add_argument("--drop", action="append", default=[], help="with --plan: a .proto removed (path under src/proto)")
    ap.add_argument(
        "--base-current",
        action="store_true",
        help="with --plan: src/common/gen is known current; plan only added files",
    )
    ap.add_argument("--manifest", type=Path, help="with --check: when current, write the hash of every file read here")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    target = root / OUT_DIR
    try:
        cache = Cache(check_tools())
        if (args.overlay or args.drop) and not args.plan:
            raise Failure("--overlay and --drop go with --plan")
        inputs = Inputs(root, args.overlay.resolve() if args.overlay else None, args.drop)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            if any(args.out.iterdir()):
                raise Failure(f"--out {args.out}: not empty")
            want, _, _ = generate(inputs, target, args.full, cache)
            materialize(want, target, args.out.resolve(), link=False)
            return 0
        if (args.base_current and not args.plan) or (args.manifest and not args.check):
            raise Failure("--base-current goes with --plan, --manifest with --check")
        only = additions_only(inputs) if args.base_current and not args.full else None
        want, _, kept = generate(inputs, target, args.full, cache, only)
        diff = stale(want, target, whole=only is None)
        if args.plan:
            for p, why in diff:
                print(f"{OUT_DIR / p}: {why}")
                if why != EXTRA:
                    (args.plan / p).parent.mkdir(parents=True, exist_ok=True)
                    (args.plan / p).write_bytes(want[p])
            return 0
        if args.check:
            for p, why in diff:
                print(f"{OUT_DIR / p}: {why}")
            if diff:
                print(f"gen_proto: {len(diff)} stale file(s); run `python3 scripts/gen_proto.py`", file=sys.stderr)
                return 1
            if args.manifest:
                write_manifest(args.manifest, inputs, want, kept)
            print("gen_proto: src/common/gen is up to date")
            return 0
        if not diff:
            print("gen_proto: src/common/gen is up to date")
            return 0
        # The new folder is made next to the target so the final rename
        # stays on one file system.
        with tempfile.TemporaryDirectory(prefix=".gen-", dir=target.parent) as tmp:
            new = Path(tmp) / "gen"
            materialize(want, target, new, link=True)
            old = Path(tmp) / "old"
            if target.exists():
                target.rename(old)
            new.rename(target)
        for p, why in diff:
            print(f"wrote {OUT_DIR / p}" if why != EXTRA else f"removed {OUT_DIR / p}")
        return 0
    except Failure as e:
        print(f"gen_proto: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
