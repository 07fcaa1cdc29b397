"""One verify run laid out in time: the daemon's events (`docker events`)
and verify's own steps (`XTASK_TRACE=1`, xtask/src/verify/run.rs) merged,
in seconds since the start. Where the wall time goes, step by step; the
tables in BENCHMARKS.md come from `bench/run.py`.

    python3 bench/timeline.py [--root DIR] [--xtask PATH] [verify args...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def event_line(raw: str) -> tuple[int, str] | None:
    """(unix ns, text) of one `docker events --format '{{json .}}'` line."""
    try:
        e = json.loads(raw)
    except ValueError:
        return None
    attrs = (e.get("Actor") or {}).get("Attributes") or {}
    what = attrs.get("name") or (e.get("Actor") or {}).get("ID", "")
    return int(e["timeNano"]), f"{e.get('Type')} {e.get('Action')} {what}"


def trace_line(raw: str) -> tuple[int, str] | None:
    """(unix ns, step) of one `verify: trace <ns> <step>` line."""
    parts = raw.split(None, 3)
    if len(parts) == 4 and parts[:2] == ["verify:", "trace"] and parts[2].isdigit():
        return int(parts[2]), "## " + parts[3].strip()
    return None


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=ROOT)
    p.add_argument("--xtask", default=os.path.join(ROOT, "target", "debug", "xtask"))
    args, rest = p.parse_known_args(argv)
    events = subprocess.Popen(["docker", "events", "--format", "{{json .}}"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)  # the stream is open before the run's first call
    t0 = time.time_ns()
    env = dict(os.environ, XTASK_TRACE="1")
    run = subprocess.run(
        [args.xtask, "--root", args.root, "verify", *rest], env=env, capture_output=True, text=True, check=False
    )
    time.sleep(0.3)
    events.terminate()
    out, _ = events.communicate()
    rows = [r for r in map(event_line, out.splitlines()) if r]
    rows += [r for r in map(trace_line, run.stderr.splitlines()) if r]
    for ns, what in sorted(rows):
        print(f"{(ns - t0) / 1e9:7.3f} {what}")
    for line in run.stderr.splitlines():
        if line.startswith("verify:") and not line.startswith("verify: trace"):
            print(line)
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()
