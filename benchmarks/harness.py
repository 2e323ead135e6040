"""What every benchmark here shares, written once: naming the machine, running code in a fresh
process, background load, result files, and tables and plots. Each benchmark is a script on top.

- Machine: `cpu_model`, `machine_line`, `package_versions`, `gpu_name`, `git_commit`.
- Fresh processes: `child_env`, `run_python` (stdout, or `ChildFailed`), `python_json` (its last
  line as JSON), `call_fresh` (`module:function(**kwargs)` in a fresh interpreter: this file run
  with --call), `or_error` (a failure as `{"error": ...}`), `Runs` (one call_fresh after another,
  each logged with its wall time and the CPU the rest of the machine used meanwhile).
- Load: `beside_load` (a CPU-heavy process running beside a measurement).
- Result files: `save_json` / `load_json` (inf and nan survive strict JSON), `same_run`,
  `runs_outside`, `finished_run` (--reuse: keep what a partial rerun does not redo).
- Tables and plots: `fmt`, `median`, `ratio`, `difference`, `table`, `pyplot`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# ---------------------------------------------------------------- the machine


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """For example "AMD EPYC, 2 cores": how the results name the machine."""
    return f"{cpu_model()}, {os.cpu_count()} cores"


def package_versions(*names: str) -> dict[str, str]:
    """{package: its __version__, or "not installed"}."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            versions[name] = "not installed"
    return versions


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


def git_commit() -> str:
    """The checkout's short commit, flagged when PPO/ or AsyncTools/ have uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True, capture_output=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "PPO", "AsyncTools"],
            cwd=REPO,
            text=True,
            capture_output=True,
        ).stdout.strip()
        return commit + (" + uncommitted changes in PPO/ or AsyncTools/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------- fresh processes


class ChildFailed(RuntimeError):
    """A child process exited with an error or ran past its timeout."""


def child_env(pythonpath=None, threads: int | None = None, **extra: str) -> dict[str, str]:
    """This process's environment for a child, with `extra` variables: PYTHONPATH exactly
    `pythonpath` (None entries dropped), by default the repository (so that `PPO` and
    `AsyncTools` import) before whatever PYTHONPATH holds; the math libraries' thread counts
    pinned to `threads` when given."""
    if pythonpath is None:
        pythonpath = (REPO, os.environ.get("PYTHONPATH"))
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath if p)
    if threads is not None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
    return env


def run_python(
    args: list[str],
    *,
    timeout: float | None = None,
    env: dict | None = None,
    cwd: Path | str = REPO,
    python: str = sys.executable,
) -> str:
    """`python *args` in a fresh process (environment `env`, by default child_env()); returns its
    stdout. Raises ChildFailed with the exit status and the last lines of its stderr, or on the
    timeout."""
    try:
        done = subprocess.run(
            [python, *args], cwd=cwd, env=env or child_env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"timed out after {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ChildFailed(f"exit {done.returncode}: " + " | ".join(tail))
    return done.stdout


def python_json(args: list[str], **options):
    """run_python, then its last line of output as JSON."""
    return json.loads(run_python(args, **options).strip().splitlines()[-1])


def or_error(call, *args, **kwargs) -> dict:
    """call(*args, **kwargs), or {"error": why} when its child failed: kept in the results."""
    try:
        return call(*args, **kwargs)
    except ChildFailed as failure:
        return {"error": str(failure)}


def call_fresh(
    target: str,
    kwargs: dict | None = None,
    *,
    threads: int | None = None,
    timeout: float | None = None,
    pythonpath=None,
):
    """`module:function(**kwargs)` in a fresh interpreter (modules of benchmarks/ and the
    repository import; `pythonpath` as child_env takes it), returning its JSON-able result.
    With `threads`, the child pins torch and the math libraries to that many threads and builds
    one optimizer before the call (the first imports torch._dynamo, ~1 s), so that no clock
    inside the call pays it."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        args = [
            str(Path(__file__)),
            "--call",
            target,
            "--kwargs",
            json.dumps(kwargs or {}),
            "--result",
            str(result),
        ]
        if threads is not None:
            args += ["--threads", str(threads)]
        run_python(args, timeout=timeout, env=child_env(pythonpath, threads))
        if not result.exists():
            raise ChildFailed(f"{target} wrote no result")
        return json.loads(result.read_text())


def _child_main(argv: list[str]) -> None:
    """The child side of call_fresh."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--call", required=True)
    parser.add_argument("--kwargs", default="{}")
    parser.add_argument("--result", required=True)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    sys.path[:0] = [str(HERE), str(REPO)]
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    module, function = args.call.split(":")
    result = getattr(importlib.import_module(module), function)(**json.loads(args.kwargs))
    Path(args.result).write_text(json.dumps(result))


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (None if unknown)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Runs:
    """Measurements called in fresh processes (call_fresh), one after the other, never in
    parallel; `log` keeps one entry per call (label, measurement, threads, kwargs, wall_s,
    other_cpu_cores: the cores the rest of the machine kept busy meanwhile, status). A failure is
    returned as {"error": ...}; `describe(result)` words a result for the log and stderr."""

    def __init__(self, timeout: float, describe=lambda result: "ok"):
        self.timeout, self.describe = timeout, describe
        self.log: list[dict] = []

    def __call__(self, label: str, target: str, threads: int = 1, **kwargs) -> dict:
        busy0, cpu0, start = _busy_seconds(), _children_cpu(), time.perf_counter()
        result = or_error(call_fresh, target, kwargs, threads=threads, timeout=self.timeout)
        wall = time.perf_counter() - start
        busy1, cpu1 = _busy_seconds(), _children_cpu()
        others = None if busy0 is None else max(0.0, (busy1 - busy0) - (cpu1 - cpu0)) / wall
        status = self.describe(result)
        self.log.append(
            dict(
                label=label,
                measurement=target.split(":")[-1],
                threads=threads,
                kwargs=kwargs,
                wall_s=round(wall, 2),
                other_cpu_cores=None if others is None else round(others, 2),
                status=status,
            )
        )
        flag = "" if others is None or others < 0.3 else f"  [other processes used {others:.1f} cores]"
        print(f"  {label}: {status} ({wall:.1f} s){flag}", file=sys.stderr, flush=True)
        return result


# ---------------------------------------------------------------- background load

BUSY_LOOP = "while True: pass"  # one pure-Python spinning process: one core kept busy


@contextlib.contextmanager
def beside_load(code: str | None = BUSY_LOOP, settle: float = 0.5):
    """Runs `python -c code` in the background for the duration of the block (None: nothing)."""
    if code is None:
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(settle)
        yield
    finally:
        hog.kill()
        hog.wait()


# ---------------------------------------------------------------- result files


def finite(value):
    """A copy of `value` that strict JSON can hold: inf/nan floats become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def unfinite(value):
    """The inverse of `finite`: the strings "inf", "-inf" and "nan" back to floats."""
    if value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, dict):
        return {k: unfinite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unfinite(v) for v in value]
    return value


def save_json(path: Path | str, data) -> None:
    """Writes `data` (strict JSON, inf/nan as strings) whole or not at all, folders made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(finite(data), indent=1, default=str) + "\n")
    partial.replace(path)


def load_json(path: Path | str, default=None):
    """What save_json wrote (`default` when there is no such file)."""
    path = Path(path)
    if default is not None and not path.is_file():
        return default
    return unfinite(json.loads(path.read_text()))


def same_run(record: dict, key: dict) -> bool:
    """Whether a stored run is the one `key` names (every key's value equal)."""
    return all(record.get(k) == v for k, v in key.items())


def runs_outside(old: list[dict], planned: list[dict]) -> list[dict]:
    """The stored runs none of `planned` names: kept beside a rerun of some of them."""
    return [r for r in old if not any(same_run(r, key) for key in planned)]


def finished_run(old: list[dict], key: dict) -> dict | None:
    """The first stored run `key` names that did not fail (--reuse), else None."""
    return next((r for r in old if same_run(r, key) and "error" not in r), None)


# ---------------------------------------------------------------- tables and plots


def fmt(value, digits: int = 0, unit: str = "", infinite: str = "n/a") -> str:
    """`value` with thousands separators and `digits` decimals; None and nan read "n/a",
    an infinity `infinite`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return infinite
    return f"{value:,.{digits}f}{unit}"


def median(values) -> float:
    """The median, nan for no values."""
    values = list(values)
    return statistics.median(values) if values else float("nan")


def ratio(a, b) -> float | None:
    """a / b, None unless both are finite numbers and b is not 0."""
    if a is None or b is None or not all(map(math.isfinite, (a, b))) or b == 0:
        return None
    return a / b


def difference(a, b) -> float | None:
    """a - b, None unless both are finite numbers."""
    if a is None or b is None or not all(map(math.isfinite, (a, b))):
        return None
    return a - b


def table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table's lines: the header, the rule, one line per row (cells as str)."""

    def line(cells):
        return "|" + "|".join(f" {cell} " if str(cell) else " " for cell in cells) + "|"

    return [line(header), "|" + "---|" * len(header)] + [line(row) for row in rows]


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return None
    return plt


if __name__ == "__main__":
    _child_main(sys.argv[1:])
