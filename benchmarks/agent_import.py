"""Start-up cost of the field agent: import time and RSS of what `nyckelfri` loads.

Run ``.venv/bin/python benchmarks/agent_import.py [--runs N] [--before REV] [--json]``.
Each figure is the median of N fresh interpreters (``python -X importtime`` is not used:
it slows imports down). Measured in the same run:

* **floor**: ``python -c pass``;
* **cli**: ``import agent.cli`` (every ``nyckelfri`` command, ``--help`` included);
* **agent run**: ``agent.cli``, ``agent.service``, ``agent.visits``,
  ``drivers.nfc.reader`` (what ``nyckelfri agent run`` loads before the first tap);

for this checkout and, with ``--before REV`` (default: the commit before the packaging
work of issue 10), for that revision checked out in a temporary git worktree and put
first on ``sys.path`` (same interpreter, same installed libraries). It also lists which
heavy libraries each path loads. It prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BEFORE = "5ef617c"  # the last landed commit before this session's issue 10 work
PATHS = {
    "floor": "pass",
    "cli": "import agent.cli",
    "agent run": "import agent.cli, agent.service, agent.visits, drivers.nfc.reader",
}
HEAVY = ("httpx", "pydantic", "sqlalchemy", "fastapi", "bumble", "bleak", "cryptography",
         "ecdsa", "nfc", "sqlite_utils", "drivers.sim", "central")
PROBE = """
import resource, sys, time
t = time.perf_counter()
{code}
elapsed = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
heavy = sorted(h for h in {heavy!r} if h in sys.modules)
print(elapsed, rss, ",".join(heavy))
"""


def measure(code: str, runs: int, path_first: Path | None) -> dict[str, Any]:
    env_path = [] if path_first is None else [str(path_first)]
    script = PROBE.format(code=code, heavy=HEAVY)
    if env_path:
        script = f"import sys; sys.path.insert(0, {env_path[0]!r})\n" + script
    times, rss, heavy = [], [], ""
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             check=True, cwd=tempfile.gettempdir()).stdout.split()
        times.append(float(out[0]))
        rss.append(int(out[1]))
        heavy = out[2] if len(out) > 2 else ""
    return {"import_ms": round(statistics.median(times) * 1000, 1),
            "rss_mib": round(statistics.median(rss) / 2**20, 1),
            "loads": heavy.split(",") if heavy else []}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="revision to compare with "
                        "('' for none)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"now": {n: measure(c, args.runs, ROOT) for n, c in PATHS.items()}}
    if args.before:
        with tempfile.TemporaryDirectory(prefix="nyckelfri-before-") as tmp:
            tree = Path(tmp) / "tree"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet",
                            str(tree), args.before], check=True)
            try:
                results[args.before] = {n: measure(c, args.runs, tree)
                                        for n, c in PATHS.items()}
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"median of {args.runs} interpreters, Python {sys.version.split()[0]}")
    for label, figures in results.items():
        print(f"\n{label}:")
        for name, f in figures.items():
            print(f"  {name:10} {f['import_ms']:7.1f} ms  {f['rss_mib']:6.1f} MiB  "
                  f"loads: {', '.join(f['loads']) or '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
