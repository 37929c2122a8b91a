"""Start-up cost of the CLI and of the library: wall and CPU seconds per command, and the memory of a loaded model.

    python tools/bench_startup.py                     # this checkout
    python tools/bench_startup.py --root /tmp/old     # another checkout of the project, e.g. an older commit

Every command runs in a fresh process, the commands interleaved, ``--repeats`` times; the table gives
medians of wall-clock and of CPU time (user + system, which a busy shared machine disturbs less). The
memory line compares ``zoo.load(MODEL)`` with a bare ``import torch`` process plus the model's parameter bytes.
``python -X importtime -c "import zoo.cli"`` shows where an import's time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The current resident set size of the running process, in MB (Linux).
RSS = "int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024"
MEMORY_PROBE = {
    "bare": f"import torch; print({RSS})",
    "model": ("import torch, zoo, json; m = zoo.load({model!r}); "
              f"print(json.dumps([{RSS}, sum(p.numel() * p.element_size() for p in m.parameters()) / 2**20]))"),
}


def run(argv, cwd, env) -> tuple[float, float]:
    """Wall and CPU seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def python_output(code, cwd, env) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]), help="project checkout")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="deepfill_v2", help="model for the memory line")
    args = parser.parse_args()

    root = Path(args.root).resolve()
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "ZOO_OFFLINE": "1"}
    photos = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    from PIL import Image

    for k in range(20):
        Image.new("RGB", (32, 32), (k * 10, 0, 0)).save(photos / f"{k}.png")
    cli = [sys.executable, "-c", "import sys; from zoo.cli import main; sys.exit(main())"]
    commands = {
        "python (nothing)": [sys.executable, "-c", "pass"],
        "import torch": [sys.executable, "-c", "import torch"],
        "import data.masks": [sys.executable, "-c", "import data.masks"],
        "zoo --help": [*cli, "--help"],
        "zoo list": [*cli, "list"],
        "zoo split": [*cli, "split", "--data", str(photos), "--out", str(photos / "split.json")],
    }
    times = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, argv in commands.items():
            times[name].append(run(argv, root, env))
    print(f"{root}, medians of {args.repeats} runs, load average {os.getloadavg()[0]:.2f}")
    print(f"{'command':<20} {'wall s':>7} {'cpu s':>7}")
    for name, samples in times.items():
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        print(f"{name:<20} {wall:7.2f} {cpu:7.2f}")

    bare = float(python_output(MEMORY_PROBE["bare"], root, env))
    loaded, params = json.loads(python_output(MEMORY_PROBE["model"].format(model=args.model), root, env))
    print(f"RSS: import torch {bare:.0f} MB; zoo.load({args.model!r}) {loaded:.0f} MB; parameters {params:.0f} MB; "
          f"overhead {loaded - bare - params:+.0f} MB")


if __name__ == "__main__":
    main()
