"""bench/run.py's command line and table (the benchmarks themselves are too
slow for a test: python3 bench/run.py --runs 1 <section> is the smoke run)."""

import importlib.util
import sys

import pytest

from conftest import ROOT


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = mod  # dataclasses looks the module up by name
    spec.loader.exec_module(mod)
    return mod


run = bench_module()


def test_sections_and_runs_in_any_order():
    args = run.parse_args(["static", "--runs", "1", "verify"])
    assert (args.sections, args.runs) == (["static", "verify"], 1)
    args = run.parse_args([])
    assert (args.sections, args.runs) == ([], 3)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["nope"], "unknown section nope; choose from static, certs, build, verify, floor, floor8, floor24, scale"),
        (["--runs", "0"], "argument --runs: 0: want 1 or more"),
        (["--runs", "x"], "argument --runs: invalid positive value: 'x'"),
        (["--runs"], "argument --runs: expected one argument"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(argv, error, capsys):
    with pytest.raises(SystemExit) as e:
        run.parse_args(argv)
    assert e.value.code == 2
    assert error in capsys.readouterr().err


def test_rows_print_as_they_come_and_as_one_table(capsys):
    ctx = run.Bench(xtask="xtask", runs=1)
    ctx.row("check, 500 services", 120.0, "ms", target="<150 ms at 500", ok=True)
    ctx.row("openssl loop / certs --force", 8.0, "x", baseline=2.5, target=">=10x", ok=False, note="(n)")
    ctx.row("per service", 0.5, "s")
    ctx.table()
    assert capsys.readouterr().out.splitlines() == [
        "  check, 500 services: 120 ms ",
        "  openssl loop / certs --force: 8 x (baseline 2.5) (n)",
        "  per service: 0.5 s ",
        "",
        "| benchmark | measured | baseline | target | met |",
        "|---|---|---|---|---|",
        "| check, 500 services | 120 ms  |  | <150 ms at 500 | yes |",
        "| openssl loop / certs --force | 8 x (n) | 2.5 x | >=10x | NO |",
        "| per service | 0.5 s  |  |  |  |",
    ]


def test_verify_phases_are_read_from_its_last_summary_line():
    out = (
        "verify: run 1a2b (2 services)\n"
        "verify: 9.0s (check 0.1s, images 5.0s)\n"
        "verify: 12.3s (check 0.2s, images 2.0s, start 1.5s, ready 3.1s, probes 0.9s, cleanup 1.2s)\n"
    )
    assert run.phases_of(out) == {
        "check": 0.2,
        "images": 2.0,
        "start": 1.5,
        "ready": 3.1,
        "probes": 0.9,
        "cleanup": 1.2,
    }
    assert run.phases_of("verify: run 1a2b (2 services)\n") == {}


def test_medians_and_ranges():
    assert run.breakdown([{"check": 0.1, "images": 2.0}, {"check": 0.3}]) == "check 0.2, images 1.0"
    assert run.spread([4.0, 1.0, 2.0]) == (2.0, "(median of 3, 1.0-4.0 s)")
