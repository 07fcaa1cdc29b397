#!/usr/bin/env python3
"""Benchmarks of the xtask, printed as one table. Every figure that has a
baseline is a ratio measured in the same run, on the same machine.

    python3 bench/run.py                     # everything (about 30 minutes)
    python3 bench/run.py static certs build  # some sections
    python3 bench/run.py --runs 1 verify     # a smoke run (figures are medians of --runs, default 3)

Sections: static (check/add-service/sync at 100, 250, 500 services),
certs (50 https services vs an openssl loop), build (the xtask's own
build), verify (against Docker Compose v2, and v1 while installed, cold and
warm),
floor (warm verify against the engine floor, alternated), floor8 and
floor24 (the same at 8 and 24 services), scale (verify
with the example's 6, then 8 and 24 services in all, against the
engine floor at each, peak RSS).

Needs what the tests need (bash scripts/setup.sh). It reports; it never fails
on a missed target.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, NamedTuple

ROOT: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Row(NamedTuple):
    """One line of the final table."""

    name: str
    value: float
    unit: str
    baseline: float | None
    target: str | None
    ok: bool | None
    note: str


@dataclasses.dataclass
class Bench:
    """What the sections share: the executables cargo built (where cargo put
    them: CARGO_TARGET_DIR, the host's triple, read from its JSON messages),
    the runs per figure, and the table's rows so far."""

    xtask: str
    runs: int
    # Built by ensure_probe() for the sections that run verify.
    probe: str | None = None
    rows: list[Row] = dataclasses.field(default_factory=list)

    def row(
        self,
        name: str,
        value: float,
        unit: str,
        baseline: float | None = None,
        target: str | None = None,
        ok: bool | None = None,
        note: str = "",
    ) -> None:
        self.rows.append(Row(name, value, unit, baseline, target, ok, note))
        b = f" (baseline {baseline:.3g})" if baseline is not None else ""
        print(f"  {name}: {value:.3g} {unit}{b} {note}", flush=True)

    def xt(self, root: str, *args: str, check: bool = True) -> Timed:
        return run([self.xtask, "--root", root, *args], check=check)

    def table(self) -> None:
        print()
        print("| benchmark | measured | baseline | target | met |")
        print("|---|---|---|---|---|")
        for name, value, unit, baseline, target, ok, note in self.rows:
            b = f"{baseline:.3g} {unit}" if baseline is not None else ""
            met = "" if ok is None else ("yes" if ok else "NO")
            print(f"| {name} | {value:.3g} {unit} {note} | {b} | {target or ''} | {met} |")


# (seconds, peak RSS in MiB, output) of one command.
Timed = tuple[float, float, str]


def run(cmd: Sequence[str], cwd: str | None = None, env: Mapping[str, str] | None = None, check: bool = True) -> Timed:
    """Runs a command; returns (seconds, peak RSS in MiB, completed output)."""
    e = dict(os.environ, NO_COLOR="1")
    e.update(env or {})
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.stdout is not None
    # wait4 gives this child's own rusage (peak RSS), not the sum of all.
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    code = os.waitstatus_to_exitcode(status)
    p.returncode = code
    text = out.decode(errors="replace")
    if check and code != 0:
        print(text)
        raise SystemExit(f"bench: {' '.join(cmd)} exited {code}")
    return dt, ru.ru_maxrss / 1024.0, text


def median(fn: Callable[[], float], n: int) -> float:
    return statistics.median(fn() for _ in range(n))


def repo_copy(tag: str) -> str:
    d = tempfile.mkdtemp(prefix=f"xtask-bench-{tag}-")
    subprocess.run(["git", "clone", "-q", ROOT, d], check=True)
    if os.path.exists(os.path.join(ROOT, ".env")):
        shutil.copy(os.path.join(ROOT, ".env"), d)
    else:
        print(
            "  note: no .env here: the stack uses the official images (without a registry, run bash scripts/setup.sh)"
        )
    return d


def no_flags(i: int) -> list[str]:
    return []


def grow(
    ctx: Bench, root: str, have: int, want: int, https: bool = False, flags: Callable[[int], list[str]] = no_flags
) -> None:
    for i in range(have, want):
        args = ["add-service", f"s{i:03d}", "--grpc", *flags(i)]
        if https:
            args.append("--https")
        ctx.xt(root, *args)


# --- sections -------------------------------------------------------------


def static(ctx: Bench) -> None:
    print("static side at scale (dev build, as `cargo xtask` runs it)")
    root = repo_copy("static")
    ctx.xt(root, "certs")
    have = 2
    per = {}
    for n in (100, 250, 500):
        grow(
            ctx,
            root,
            have,
            n,
            flags=lambda i: ["--pg"] if i % 3 == 0 else (["--public", f"/s{i:03d}/"] if i % 5 == 0 else []),
        )
        have = n
        chk = median(lambda: ctx.xt(root, "check")[0], 5)
        syn = median(lambda: ctx.xt(root, "sync", "--check")[0], 5)

        def add_once() -> float:
            dt = ctx.xt(root, "add-service", "extra", "--grpc", "--pg")[0]
            ctx.xt(root, "remove-service", "extra")
            return dt

        add = median(add_once, 3)
        per[n] = (chk, add, syn)
        ctx.row(
            f"check, {n} services",
            chk * 1000,
            "ms",
            target="<150 ms at 500" if n == 500 else None,
            ok=(chk < 0.150) if n == 500 else None,
        )
        ctx.row(
            f"add-service, {n} services",
            add * 1000,
            "ms",
            target="<100 ms at 500" if n == 500 else None,
            ok=(add < 0.100) if n == 500 else None,
        )
        ctx.row(
            f"sync --check, {n} services",
            syn * 1000,
            "ms",
            target="<150 ms at 500" if n == 500 else None,
            ok=(syn < 0.150) if n == 500 else None,
        )
    for i, what in enumerate(("check", "add-service", "sync --check")):
        # Linear growth: time per service stays flat from 100 to 500.
        r = (per[500][i] / 500) / (per[100][i] / 100)
        ctx.row(f"{what}: per-service time 500 vs 100", r, "x", target="~1 or less (linear)", ok=r < 1.5)
    shutil.rmtree(root)


def certs(ctx: Bench) -> None:
    print("certificates: 50 https services")
    root = repo_copy("certs")
    ctx.xt(root, "certs")
    grow(ctx, root, 2, 51, https=True)  # accounts + 49 = 50 https services
    ours = median(lambda: ctx.xt(root, "certs", "--force")[0], 3)
    tmp = tempfile.mkdtemp(prefix="xtask-bench-openssl-")
    shutil.copy(os.path.join(root, "certs/ca/ca.pem"), tmp)
    shutil.copy(os.path.join(root, "certs/ca/ca.key"), tmp)
    names = ["server"] + [f"s{i:03d}" for i in range(2, 51)] + ["accounts"]

    def loop() -> float:
        t = time.perf_counter()
        for n in names:
            ext = os.path.join(tmp, f"{n}.ext")
            with open(ext, "w") as f:
                f.write(f"subjectAltName=DNS:{n}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
            run(
                [
                    "openssl",
                    "req",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    f"{n}.key",
                    "-out",
                    f"{n}.csr",
                    "-subj",
                    f"/CN={n}",
                ],
                cwd=tmp,
            )
            run(
                [
                    "openssl",
                    "x509",
                    "-req",
                    "-in",
                    f"{n}.csr",
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "825",
                    "-extfile",
                    ext,
                    "-out",
                    f"{n}.pem",
                ],
                cwd=tmp,
            )
        return time.perf_counter() - t

    theirs = median(loop, 3)
    ctx.row("certs --force, 51 certificates", ours * 1000, "ms", baseline=theirs * 1000)
    ctx.row("openssl loop / certs --force", theirs / ours, "x", target=">=10x", ok=theirs / ours >= 10)
    shutil.rmtree(tmp)
    shutil.rmtree(root)


def build(ctx: Bench) -> None:
    print("the xtask's own build")
    target = tempfile.mkdtemp(prefix="xtask-bench-target-")
    env = {"CARGO_TARGET_DIR": target}
    run(["cargo", "fetch"], cwd=ROOT)
    dt, _, out = run(["cargo", "build", "-p", "xtask", "--offline"], cwd=ROOT, env=env)
    crates = out.count("Compiling ")
    ctx.row("cold cargo build -p xtask", dt, "s", target="<60 s", ok=dt < 60, note=f"({crates} crates compiled)")
    src = os.path.join(ROOT, "xtask", "src", "main.rs")
    os.utime(src)
    dt, _, _ = run(["cargo", "build", "-p", "xtask", "--offline"], cwd=ROOT, env=env)
    ctx.row("rebuild after touching one file", dt, "s", target="<3 s", ok=dt < 3)
    exe = os.path.join(target, "debug", "xtask")
    h = median(lambda: run([exe, "--help"])[0], 10)
    ctx.row("xtask --help", h * 1000, "ms", target="<500 ms", ok=h < 0.5)
    shutil.rmtree(target)


# --- verify and the Docker Compose baselines -------------------------------
#
# The baseline is what a shell script around Compose would do on the same
# stack: `up -d --build`, wait until each container answers (the same
# readiness as verify: pg_isready, redis-cli ping, a TCP connect or HTTP GET),
# one `exec` TCP connect per (source, target) pair, `down -v -t 1`. Compose v2
# (`docker compose`, the CLI plugin scripts/setup.sh installs; never PyPI's
# `docker-compose` wrapper, which drops exit codes) is the baseline; Debian's
# v1 (`docker-compose`) is a second row while it is installed.
#
# The probe binary is built before anything is timed and handed to verify
# (XTASK_PROBE_BIN): it is part of neither side's cold cost.

PAIRS_PORTS: Final = MappingProxyType(
    {"postgres": 5432, "redis": 6379, "nginx": 443, "accounts": 50051, "gateway": 8080}
)
PROJECT: Final = "xtaskbench"


def compose_clis() -> list[tuple[str, list[str]]]:
    """(label, command) of each Compose to compare with: v2 first."""
    out = []
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if v2.returncode == 0 and " v2." in v2.stdout:
        out.append(("compose v2", ["docker", "compose"]))
    else:
        raise SystemExit("bench: Docker Compose v2 (`docker compose`) is missing; run bash scripts/setup.sh")
    v1 = shutil.which("docker-compose")
    if v1:
        ver = subprocess.run([v1, "version", "--short"], capture_output=True, text=True, check=False).stdout.strip()
        if ver.startswith("1."):
            out.append(("compose v1", [v1]))
    return out


def remove_all_images(project: str = PROJECT) -> None:
    """Every image either side built, under every name, and BuildKit's cache,
    so that the next run is cold: verify's `monorepo-verify/<service>:<hash>`
    tags, Compose v2's `<project>-<service>` and v1's `<project>_<service>`.
    By id, so that every other tag of the same image (and its layers) goes too.
    The base images (`.env`, `cargo xtask images bootstrap`) stay. This is
    daemon-wide: run the cold benchmark when nothing else uses the daemon
    (another verify would lose its images mid-run)."""
    listing = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}} {{.ID}}"], capture_output=True, text=True, check=False
    ).stdout
    ids = set()
    for line in listing.splitlines():
        repo, _, iid = line.partition(" ")
        if repo.startswith(("monorepo-verify/", f"{project}-", f"{project}_")):
            ids.add(iid)
    if ids:
        subprocess.run(["docker", "rmi", "-f", *sorted(ids)], capture_output=True, check=False)
    subprocess.run(["docker", "image", "prune", "-f"], capture_output=True, check=False)
    # BuildKit keeps its cache apart from the image list.
    subprocess.run(["docker", "builder", "prune", "-af"], capture_output=True, check=False)
    listing = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}"], capture_output=True, text=True, check=False
    ).stdout
    left = [
        repo for repo in listing.splitlines() if repo.startswith(("monorepo-verify/", f"{project}-", f"{project}_"))
    ]
    if left:
        raise SystemExit(f"bench: could not remove {left} (in use?); a cold run would not be cold")


def seed_dir(root: str) -> str:
    """Where verify caches Postgres's initialised data directory
    (xtask/src/verify/pgseed.rs): removed before a cold run, as BuildKit's
    cache is for Compose."""
    target = os.environ.get("CARGO_TARGET_DIR") or "target"
    return os.path.join(root, target, "xtask", "pg-seed")


def read_env_file(path: str) -> dict[str, str]:
    """KEY=value lines of a .env file; {} when there is none."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return dict(line.split("=", 1) for line in f if "=" in line and not line.startswith("#"))


def probe_image() -> str | None:
    """verify's newest probe image (`monorepo-local/probe:<hash>`), if any."""
    out = subprocess.run(
        ["docker", "images", "monorepo-local/probe", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return out[0] if out else None


def engine_floor(root: str, full: bool = False, probes: str | None = None, execs: str | None = None) -> float:
    """What the engine alone takes for the stack's own objects, through the
    docker CLI with every call of a step in parallel: create its networks,
    create its containers (verify's images, the environment and command
    Compose resolves, their networks), connect, start, remove them, remove
    the networks. No readiness, no probe: a lower bound for verify's and
    Compose's start and cleanup (the CLI adds its own ~50 ms per call). The
    stack is read by Compose itself (`docker compose config`), so it grows
    with `scale`'s services.

    `full`: the containers also publish their ports (host IP kept, an
    ephemeral host port, as verify publishes them) and mount their binds and
    volumes, so the engine's own cost for those (iptables rules, the
    userland proxy, mounts) is in the floor too; the issue's floor is
    without them.

    `probes` (verify's probe image): one more container per service in its
    network namespace (`network_mode: container:<service>`, as verify's row
    probes), started once its service has and removed before it: what the
    engine alone needs for the proof's own containers.

    `execs` (the probe's executable): no probe container; each service's
    container mounts the executable read-only and, once started, runs it
    once by `docker exec` (`probe exists /`, which ends at once): what the
    engine would need for a proof run inside the services' own containers,
    the way round the probe containers' cost (not what verify does)."""
    cfg = json.loads(
        subprocess.run(
            ["docker", "compose", "config", "--format", "json"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
    )
    built: dict[str, str] = {}
    for line in subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True, check=False
    ).stdout.splitlines():
        repo = line.split(":")[0]
        if repo.startswith("monorepo-verify/"):
            built.setdefault(repo.removeprefix("monorepo-verify/"), line)
    services: dict[str, Any] = cfg["services"]
    nets = sorted({n for s in services.values() for n in (s.get("networks") or {})})

    def par(cmds: list[list[str]]) -> None:
        ps = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in cmds]
        for p in ps:
            p.wait()

    def create(name: str, s: Mapping[str, Any]) -> list[str]:
        image = built.get(name) or s.get("image") or ""
        cmd = ["docker", "create", "--name", f"floor-{name}"]
        own = list(s.get("networks") or {})
        if own:
            cmd += ["--network", f"floor-{own[0]}"]
        for k, v in (s.get("environment") or {}).items():
            cmd += ["-e", f"{k}={v}" if v is not None else k]
        if full:
            for p in s.get("ports") or []:
                host = f"{p['host_ip']}::" if p.get("host_ip") else ""
                cmd += ["-p", f"{host}{p['target']}/{p.get('protocol', 'tcp')}"]
            for m in s.get("volumes") or []:
                src = f"floor-{m['source']}" if m["type"] == "volume" else m["source"]
                ro = ",readonly" if m.get("read_only") else ""
                cmd += ["--mount", f"type={m['type']},source={src},target={m['target']}{ro}"]
        if execs:
            cmd += ["--mount", f"type=bind,source={execs},target=/.monorepo-probe,readonly"]
        return [*cmd, image, *(s.get("command") or [])]

    vols = sorted(cfg.get("volumes") or {}) if full else []

    t = time.perf_counter()
    par(
        [["docker", "network", "create", f"floor-{n}"] for n in nets]
        + [["docker", "volume", "create", f"floor-{v}"] for v in vols]
    )
    par([create(name, s) for name, s in services.items()])
    par(
        [
            ["docker", "network", "connect", f"floor-{n}", f"floor-{name}"]
            for name, s in services.items()
            for n in list(s.get("networks") or {})[1:]
        ]
    )
    if probes:
        # A readiness wait on a closed port: it runs until removed, costing
        # next to no CPU.
        wait = ["wait", "60", "kind=tcp&host=127.0.0.1&port=1"]
        par(
            [
                [
                    *("docker", "create", "--name", f"floor-p-{name}"),
                    *("--network", f"container:floor-{name}", "--cap-drop", "ALL", probes, *wait),
                ]
                for name in services
            ]
        )
        par([["sh", "-c", f"docker start floor-{name} && docker start floor-p-{name}"] for name in services])
        par([["docker", "rm", "-f", f"floor-p-{name}"] for name in services])
    elif execs:
        par(
            [
                ["sh", "-c", f"docker start floor-{name} && docker exec floor-{name} /.monorepo-probe exists /"]
                for name in services
            ]
        )
    else:
        par([["docker", "start", f"floor-{name}"] for name in services])
    par([["docker", "rm", "-f", "-v", f"floor-{name}"] for name in services])
    par(
        [["docker", "network", "rm", f"floor-{n}"] for n in nets]
        + [["docker", "volume", "rm", f"floor-{v}"] for v in vols]
    )
    return time.perf_counter() - t


def compose_baseline(root: str, dc: list[str]) -> float:
    """up --build, wait until every container answers, one exec per pair, down -v -t 1."""
    dc = [*dc, "-p", PROJECT]
    t = time.perf_counter()
    run([*dc, "up", "-d", "--build"], cwd=root)
    ready = {
        "postgres": ["pg_isready", "-h", "127.0.0.1", "-U", "app"],
        "redis": ["redis-cli", "ping"],
        "accounts": ["python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 50051), 2)"],
        "gateway": [
            "python3",
            "-c",
            "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)",
        ],
        "nginx": ["nginx", "-t"],
    }
    deadline = time.time() + 120
    for svc, cmd in ready.items():
        while True:
            if (
                subprocess.run([*dc, "exec", "-T", svc, *cmd], cwd=root, capture_output=True, check=False).returncode
                == 0
            ):
                break
            if time.time() > deadline:
                run([*dc, "down", "-v", "-t", "1"], cwd=root, check=False)
                raise SystemExit(f"baseline: {svc} never became ready")
            time.sleep(0.5)
    for src in ("accounts", "gateway"):
        for dst, port in PAIRS_PORTS.items():
            if dst == src:
                continue
            probe = (
                f"import socket\ntry:\n    socket.create_connection(('{dst}', {port}), 2)\nexcept OSError:\n    pass\n"
            )
            run([*dc, "exec", "-T", src, "python3", "-c", probe], cwd=root, check=False)
    # -t 1: verify removes its containers with force and never waits for a
    # stop, so Compose's stop is capped too. The services themselves stop on
    # SIGTERM (exit 0 within STOP_GRACE, 1 s by default: common/serve.py,
    # tests/python/test_sigterm.py), so the cap rarely cuts anything short;
    # it keeps a slow stop of any container from counting against Compose.
    run([*dc, "down", "-v", "-t", "1"], cwd=root)
    return time.perf_counter() - t


PHASES = ("check", "images", "start", "ready", "probes", "cleanup")


# (seconds, peak RSS in MiB, {phase: seconds}) of one verify.
VerifyRun = tuple[float, float, dict[str, float]]


def verify_run(ctx: Bench, root: str, *args: str, cold: bool = False) -> VerifyRun:
    """(seconds, peak RSS, {phase: seconds}) of one verify. `cold`: with an
    empty cache for scripts/gen_proto.py and the proto stamp (check's MR017)."""
    assert ctx.probe is not None, "ensure_probe() first"
    env = {"XTASK_PROBE_BIN": ctx.probe}
    if cold:
        env["GEN_PROTO_CACHE"] = tempfile.mkdtemp(prefix="xtask-bench-protocache-")
    dt, rss, out = run([ctx.xtask, "--root", root, "verify", *args], env=env)
    if cold:
        shutil.rmtree(env["GEN_PROTO_CACHE"], ignore_errors=True)
    return dt, rss, phases_of(out)


def phases_of(out: str) -> dict[str, float]:
    """{phase: seconds} from verify's last summary line,
    `verify: 12.3s (check 0.1s, images 2.0s, ...)`; {} without one."""
    phases: dict[str, float] = {}
    lines = [line for line in out.splitlines() if line.startswith("verify: ") and "s (" in line]
    if lines:
        for part in lines[-1].split("(", 1)[1].rstrip(")").split(", "):
            name, _, secs = part.rpartition(" ")
            try:
                phases[name] = float(secs.rstrip("s"))
            except ValueError:
                pass
    return phases


def cargo_exe(args: list[str], name: str, env: Mapping[str, str] | None = None) -> str:
    """Builds with cargo and returns the executable `name` as cargo names it."""
    out = subprocess.run(
        ["cargo", "build", "--quiet", "--message-format=json-render-diagnostics", *args],
        cwd=ROOT,
        env=dict(os.environ, **(env or {})),
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    exes = [
        m["executable"]
        for m in map(json.loads, out.splitlines())
        if m.get("reason") == "compiler-artifact" and m["target"]["name"] == name and m.get("executable")
    ]
    exe: str = exes[-1]
    return exe


def ensure_probe(ctx: Bench) -> None:
    """Builds the probe once, as verify would, and records it in `ctx`."""
    # The same build as verify's (xtask/src/verify/probe_build.rs): the
    # host's Linux triple, the user's RUSTFLAGS plus +crt-static.
    if ctx.probe is not None:
        return
    triple = {"x86_64": "x86_64-unknown-linux-gnu", "aarch64": "aarch64-unknown-linux-gnu"}[os.uname().machine]
    flags = (os.environ.get("RUSTFLAGS", "") + " -C target-feature=+crt-static").strip()
    ctx.probe = cargo_exe(["--release", "-p", "probe", "--target", triple], "probe", {"RUSTFLAGS": flags})


def spread(xs: Sequence[float]) -> tuple[float, str]:
    """median, and the range as a note."""
    return statistics.median(xs), f"(median of {len(xs)}, {min(xs):.1f}-{max(xs):.1f} s)"


def breakdown(runs: Sequence[Mapping[str, float]]) -> str:
    """The median of each phase over runs, as one note."""
    return ", ".join(
        f"{p} {statistics.median(r.get(p, 0.0) for r in runs):.1f}" for p in PHASES if any(p in r for r in runs)
    )


def verify(ctx: Bench) -> None:
    print(f"verify against the Docker Compose baselines (example stack, {ctx.runs} runs each)")
    ensure_probe(ctx)
    root = repo_copy("verify")
    ctx.xt(root, "certs")
    clis = compose_clis()
    print("  baselines: " + ", ".join(f"{n} ({' '.join(c)})" for n, c in clis))
    # Cold: before every run, every image of either side and BuildKit's cache go.
    cold: dict[str, list[float]] = {"verify": [], **{n: [] for n, _ in clis}}
    cold_phases: list[dict[str, float]] = []
    for i in range(ctx.runs):
        remove_all_images()
        shutil.rmtree(seed_dir(root), ignore_errors=True)
        dt, _, ph = verify_run(ctx, root, cold=True)
        cold["verify"].append(dt)
        cold_phases.append(ph)
        print(f"    cold {i + 1}: verify {dt:.1f} s ({breakdown([ph])})", flush=True)
        for n, dc in clis:
            remove_all_images()
            dt = compose_baseline(root, dc)
            cold[n].append(dt)
            print(f"    cold {i + 1}: {n} {dt:.1f} s", flush=True)
    remove_all_images()
    # Warm: each side with its own images in place (unmeasured runs first:
    # one that builds, one that caches Postgres's data directory, which a
    # run that builds leaves to the next).
    warm: dict[str, list[float]] = {"verify": [], **{n: [] for n, _ in clis}}
    warm_phases: list[dict[str, float]] = []
    rss = 0.0
    verify_run(ctx, root)
    verify_run(ctx, root)
    for i in range(ctx.runs):
        dt, r, ph = verify_run(ctx, root)
        warm["verify"].append(dt)
        warm_phases.append(ph)
        rss = max(rss, r)
        print(f"    warm {i + 1}: verify {dt:.1f} s ({breakdown([ph])})", flush=True)
    for n, dc in clis:
        compose_baseline(root, dc)
        for i in range(ctx.runs):
            warm[n].append(compose_baseline(root, dc))
            print(f"    warm {i + 1}: {n} {warm[n][-1]:.1f} s", flush=True)
    for kind, data, phases, target in (("cold", cold, cold_phases, 0.8), ("warm", warm, warm_phases, 0.5)):
        v, vnote = spread(data["verify"])
        for n, _ in clis:
            b, bnote = spread(data[n])
            ctx.row(f"verify {kind} vs {n}", v, "s", baseline=b, note=f"{vnote}; baseline {bnote}")
            if n == "compose v2":
                ctx.row(f"verify/{n} {kind}", v / b, "x", target=f"<={target}", ok=v / b <= target)
            else:
                ctx.row(f"verify/{n} {kind}", v / b, "x")
        ctx.row(f"verify {kind}: phases (median s)", v, "s", note=breakdown(phases))
    ctx.row("verify peak RSS (xtask)", rss, "MiB", target="<100 MiB", ok=rss < 100)
    floor, fnote = spread([engine_floor(root) for _ in range(ctx.runs)])
    b, _ = spread(warm["compose v2"])
    ctx.row(
        "engine floor: the example's networks and containers created, started, removed",
        floor,
        "s",
        note=f"{fnote}; {floor / b:.2f}x the Compose v2 warm baseline",
    )
    v, _ = spread(warm["verify"])
    ctx.row("verify warm / engine floor", v / floor, "x", target="<=1.3", ok=v / floor <= 1.3)
    remove_all_images()
    shutil.rmtree(root)


def floor(ctx: Bench, services: int = 0) -> None:
    """Warm verify against the engine floor, alternated in one loop so both
    see the same machine (the quick form of the ratio that `verify` and
    `scale` also report): the example, or (`services`) the example grown to
    that many services with `add-service --grpc`, every other one `--pg`."""
    what = f"{services} services" if services else "example"
    print(f"warm verify against the engine floor ({what}, {ctx.runs} runs each, alternated)")
    ensure_probe(ctx)
    root = repo_copy("floor")
    ctx.xt(root, "certs")
    if services:
        have = len(json.loads(ctx.xt(root, "list", "--format", "json")[2]))
        grow(ctx, root, 0, services - have, flags=lambda i: ["--pg"] if i % 2 == 0 else [])
    verify_run(ctx, root)  # builds
    verify_run(ctx, root)  # caches Postgres's data directory
    runs: list[VerifyRun] = []
    floors: list[float] = []
    fulls: list[float] = []
    withprobes: list[float] = []
    withexecs: list[float] = []
    image = probe_image()
    for _ in range(ctx.runs):
        runs.append(verify_run(ctx, root))
        floors.append(engine_floor(root))
        fulls.append(engine_floor(root, full=True))
        if image:
            withprobes.append(engine_floor(root, probes=image))
        if ctx.probe:
            withexecs.append(engine_floor(root, execs=ctx.probe))
    v, vnote = spread([r[0] for r in runs])
    f, fnote = spread(floors)
    ff, ffnote = spread(fulls)
    ctx.row(f"verify warm, {what}", v, "s", note=f"{vnote}; {breakdown([r[2] for r in runs])}")
    ctx.row(f"engine floor, {what}", f, "s", note=fnote)
    ctx.row(f"verify warm / engine floor, {what}", v / f, "x", target="<=1.3", ok=v / f <= 1.3)
    ctx.row(f"engine floor with ports and mounts, {what}", ff, "s", note=ffnote)
    ctx.row(f"verify warm / engine floor with ports and mounts, {what}", v / ff, "x")
    if withprobes:
        fp, fpnote = spread(withprobes)
        ctx.row(f"engine floor with one probe container per service, {what}", fp, "s", note=fpnote)
        ctx.row(f"verify warm / engine floor with probe containers, {what}", v / fp, "x")
    if withexecs:
        fe, fenote = spread(withexecs)
        ctx.row(f"engine floor with one probe exec per service instead, {what}", fe, "s", note=fenote)
    shutil.rmtree(root)


def floor8(ctx: Bench) -> None:
    """`floor` at 8 services: the example and two more."""
    floor(ctx, 8)


def floor24(ctx: Bench) -> None:
    """`floor` at 24 services: the issue's second stack."""
    floor(ctx, 24)


def scale(ctx: Bench) -> None:
    """Warm verify and the engine floor at the example's size, 8 and 24
    services in all (the added ones `--grpc`, every third `--pg`, every
    fourth `--redis`)."""
    ensure_probe(ctx)
    root = repo_copy("scale")
    ctx.xt(root, "certs")
    base = len(json.loads(ctx.xt(root, "list", "--format", "json")[2]))
    print(f"verify with {base}, 8 and 24 services ({ctx.runs} warm runs each)")
    have = base
    for n in (base, 8, 24):
        # s000, s001, ... are the added ones: those up to n - base.
        grow(
            ctx,
            root,
            have - base,
            n - base,
            flags=lambda i: (["--pg"] if i % 3 == 0 else []) + (["--redis"] if i % 4 == 0 else []),
        )
        have = n
        verify_run(ctx, root)  # builds what is new
        verify_run(ctx, root)  # caches Postgres's data directory for the new init script
        runs = [verify_run(ctx, root) for _ in range(ctx.runs)]
        dt, note = spread([r[0] for r in runs])
        ctx.row(
            f"verify warm, {n} services",
            dt,
            "s",
            target="<30 s at 24" if n == 24 else None,
            ok=(dt < 30) if n == 24 else None,
            note=f"{note}; {breakdown([r[2] for r in runs])}",
        )
        ctx.row(f"verify warm, {n} services, per service", dt / n, "s")
        floor, fnote = spread([engine_floor(root) for _ in range(ctx.runs)])
        ctx.row(
            f"engine floor, {n} services",
            floor,
            "s",
            target="verify <= 1.3x",
            ok=dt <= 1.3 * floor,
            note=f"{fnote}; verify is {dt / floor:.2f}x",
        )
        rss = max(r[1] for r in runs)
        ctx.row(f"verify peak RSS, {n} services", rss, "MiB", target="<100 MiB", ok=rss < 100)
    shutil.rmtree(root)


SECTIONS: Final[Mapping[str, Callable[[Bench], None]]] = MappingProxyType(
    {
        "static": static,
        "certs": certs,
        "build": build,
        "verify": verify,
        "floor": floor,
        "floor8": floor8,
        "floor24": floor24,
        "scale": scale,
    }
)


def positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text}: want 1 or more")
    return n


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # No `choices=`: Python 3.11's argparse rejects an empty list against them.
    ap.add_argument("sections", nargs="*", metavar="SECTION", help=f"one of {', '.join(SECTIONS)} (default: all)")
    ap.add_argument("--runs", type=positive, default=3, help="each figure is the median of N runs (default 3)")
    # Intermixed: `static --runs 1 verify` works as it always did.
    args = ap.parse_intermixed_args(argv)
    for w in args.sections:
        if w not in SECTIONS:
            ap.error(f"unknown section {w}; choose from {', '.join(SECTIONS)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    wanted = args.sections or list(SECTIONS)
    ctx = Bench(xtask=cargo_exe(["-p", "xtask"], "xtask"), runs=args.runs)
    for w in wanted:
        SECTIONS[w](ctx)
    ctx.table()


if __name__ == "__main__":
    main()
