"""Run every httpx-tokenauth benchmark and print one table.

    python bench/run.py            # the full run (a few minutes)
    python bench/run.py --quick    # a smoke run (seconds): every row, numbers meaningless
    python bench/run.py --only overhead,herd --json results.json

Everything runs on this machine. Benchmarks 1-6 and 10 run in this process or
in child interpreters, with the token endpoint and the API as
httpx.MockTransport handlers; the fleet (7-9) and the per-credential cost (11)
run against real servers on 127.0.0.1 (httpx_tokenauth.testing: an
authorization server and an API over TLS, a valkey-server). Peers that are not
installed (``pip install -e '.[bench]'``) show "not installed" in their cells.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import credentials
import dpop
import fleet
import herd
import importtime
import memory
import minting
import overhead
import renewal
import storeoverhead
from _common import Row, Section, peers

#: name -> the benchmark's run(quick=...) function, in the order of the issues. A
#: benchmark returns one Section, or several (the fleet: token requests, herd
#: latency, Redis down, all from the same fleets).
BENCHMARKS: dict[str, Callable[..., Section | list[Section]]] = {
    "overhead": overhead.run,
    "herd": herd.run,
    "renewal": renewal.run,
    "minting": minting.run,
    "importtime": importtime.run,
    "memory": memory.run,
    "fleet": fleet.run,
    "storeoverhead": storeoverhead.run,
    "credentials": credentials.run,
    "dpop": dpop.run,
}

#: Every row the summary table has, by key (the smoke test checks them all).
ROW_KEYS = (
    "1a",
    "1b",
    "2a",
    "2b",
    "2c",
    "2d",
    "2e",
    "2f",
    "3a",
    "3b",
    "4a",
    "4b",
    "4c",
    "4d",
    "4e",
    "4f",
    "5",
    "6a",
    "6b",
    "7a",
    "7b",
    "7c",
    "7d",
    "7e",
    "7f",
    "8a",
    "8b",
    "9a",
    "9b",
    "9c",
    "9d",
    "10a",
    "10b",
    "11a",
    "11b",
    "12a",
    "12b",
    "12c",
    "12d",
)

HEADER = [
    "#",
    "Measurement",
    "httpx-tokenauth",
    "Baseline",
    "authlib",
    "httpx-auth",
    "Target",
    "Result",
]

PACKAGES = ("httpx-tokenauth", "httpx", "anyio", "pyjwt", "cryptography", "authlib", "httpx-auth")


def table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def _row_cells(row: Row) -> list[str]:
    return [
        row.key,
        row.measurement,
        row.ours,
        row.baseline,
        row.authlib,
        row.httpx_auth,
        row.target,
        row.result,
    ]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def environment(argv: list[str]) -> dict[str, str]:
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(argv),
        "cpus": f"{os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})"
        if hasattr(os, "sched_getaffinity")
        else str(os.cpu_count()),
        "cpu model": _cpu_model(),
        "memory": _memory_total(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    for name in PACKAGES:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            env[name] = "not installed"
    p = peers()
    if p.authlib is not None:
        env["authlib"] += " (its httpx clients, on httpx)"
    return env


def render(sections: list[Section], env: dict[str, str], elapsed: float) -> str:
    rows = [row for s in sections for row in s.rows]
    out = [
        "## Results",
        "",
        table(HEADER, [_row_cells(r) for r in rows]),
        "",
        "## Environment",
        "",
        *(f"- {k}: {v}" for k, v in env.items()),
        f"- wall time of the run: {elapsed:.0f} s",
    ]
    for section in sections:
        out += ["", f"## {section.title}", ""]
        if section.details:
            out += [table(section.details_header, section.details), ""]
        out += [f"- {note}" for note in section.notes]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: every row, in seconds, no real numbers"
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--json", type=Path, help="also write the raw numbers to this file")
    args = parser.parse_args(argv)
    chosen = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = sorted(chosen - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    names = [n for n in BENCHMARKS if not chosen or n in chosen]

    command = [Path(sys.executable).name, "bench/run.py", *(argv or sys.argv[1:])]
    started = time.perf_counter()
    sections: list[Section] = []
    for name in names:
        t0 = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        result = BENCHMARKS[name](quick=args.quick)
        sections.extend(result if isinstance(result, list) else [result])
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    env = environment(command)
    if args.quick:
        env["mode"] = "--quick: a smoke run; the numbers mean nothing"
        for section in sections:
            for row in section.rows:
                if row.result != "—":
                    row.result = "not judged (--quick)"
    print(render(sections, env, elapsed))
    if args.json:
        payload = {
            "environment": env,
            "elapsed_s": elapsed,
            "sections": {s.title: s.data for s in sections},
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
