"""5. Import time: what ``import httpx_tokenauth`` adds to ``import httpx``, in a new interpreter.

Each measurement is a new ``python -I`` process that times, with
``perf_counter_ns``, ``import httpx`` and then the import of the library under
test (which finds httpx already loaded): the second figure is what the library
adds on top of httpx. Timing inside the child leaves out interpreter start-up,
which is the same for all and only adds noise. One child per library per
round, in rotated order; medians over rounds. The peers are timed the same
way. A separate child checks that pyjwt and cryptography are not loaded by
the import (they load when a JWT class is first used).
"""

from __future__ import annotations

import json
import subprocess
import sys

from _common import Row, Section, iqr, median, peers, rotations, verdict

TARGET_MS = 15.0

_LAZY_CHECK = (
    "import json, sys; import httpx_tokenauth; "
    "print(json.dumps(sorted(m for m in ('jwt', 'cryptography') if m in sys.modules)))"
)

#: The import each child times after ``import httpx``. authlib is imported on
#: httpx, as everywhere in these benchmarks (httpx2 hidden, see _common.peers).
IMPORTS = {
    "ours": ("", "httpx_tokenauth"),
    "authlib": ("sys.modules['httpx2'] = None", "authlib.integrations.httpx_client"),
    "httpx-auth": ("", "httpx_auth"),
}

_CHILD = """\
import sys, time
{prelude}
t0 = time.perf_counter_ns()
import httpx
t1 = time.perf_counter_ns()
import {module}
t2 = time.perf_counter_ns()
print(t1 - t0, t2 - t1)
"""


def _time(name: str) -> tuple[float, float]:
    """(ms to import httpx, ms the library adds) in a new interpreter."""
    prelude, module = IMPORTS[name]
    out = subprocess.run(  # noqa: S603  (our own interpreter, fixed code)
        [sys.executable, "-I", "-W", "ignore", "-c", _CHILD.format(prelude=prelude, module=module)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[0]) / 1e6, int(out[1]) / 1e6


def _cell(added: list[float]) -> str:
    lo, hi = iqr(added)
    return f"+{median(added):.1f} ms (IQR {lo:.1f}-{hi:.1f})"


def run(*, quick: bool) -> Section:
    rounds = 1 if quick else 40
    p = peers()
    variants = ["ours"] + [lib for lib in ("authlib", "httpx-auth") if not p.missing(lib)]
    for name in [] if quick else variants:  # warm the OS file cache and bytecode caches
        _time(name)
    httpx_ms: list[float] = []
    added: dict[str, list[float]] = {name: [] for name in variants}
    for order in rotations(variants, rounds):
        for name in order:
            base, extra = _time(name)
            httpx_ms.append(base)
            added[name].append(extra)
    loaded = json.loads(
        subprocess.run(  # noqa: S603
            [sys.executable, "-I", "-c", _LAZY_CHECK], check=True, capture_output=True, text=True
        ).stdout
    )
    lazy = "pyjwt/cryptography not loaded" if not loaded else f"loads {', '.join(loaded)}"
    ours = median(added["ours"])
    lo, hi = iqr(httpx_ms)
    details = [["import httpx", f"{median(httpx_ms):.1f}", f"{lo:.1f} - {hi:.1f}"]]
    for name in variants:
        lo, hi = iqr(added[name])
        details.append(
            [
                f"import {IMPORTS[name][1]}, after httpx",
                f"{median(added[name]):.1f}",
                f"{lo:.1f} - {hi:.1f}",
            ]
        )
    return Section(
        title="5. Import time",
        rows=[
            Row(
                key="5",
                measurement="Import time added to import httpx, new interpreter",
                ours=f"{_cell(added['ours'])}; {lazy}",
                baseline=f"import httpx: {median(httpx_ms):.1f} ms",
                authlib=_cell(added["authlib"])
                if "authlib" in added
                else str(p.missing("authlib")),
                httpx_auth=_cell(added["httpx-auth"])
                if "httpx-auth" in added
                else str(p.missing("httpx-auth")),
                target=f"≤ +{TARGET_MS:.0f} ms",
                result=verdict(ours <= TARGET_MS),
            )
        ],
        details_header=["python -I, timed inside the child", "median ms", "IQR ms"],
        details=details,
        notes=[
            f"{rounds} rounds, one new interpreter per library per round, in rotated order.",
        ],
        data={"rounds": rounds, "httpx_ms": httpx_ms, "added_ms": added, "loaded": loaded},
    )
