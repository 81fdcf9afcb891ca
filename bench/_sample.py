"""Shared helpers for the benchmarks: a generated post in a copy of the sample newsletter."""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = ("stride hip glute tendon cadence load tempo easy threshold recovery strength power "
         "spring ankle knee calf hamstring core balance drill interval hill form breath "
         "fatigue sleep fuel effort rhythm posture").split()


def arguments(doc: str) -> argparse.ArgumentParser:
    """A parser whose --help shows the script's docstring as written: what it measures."""
    return argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def copy_sample(target: Path | None = None) -> Path:
    """A throwaway copy of the sample newsletter to write into."""
    root = Path(target or tempfile.mkdtemp(prefix="runletter-bench-"))
    shutil.copy(REPO / "runletter.toml", root / "runletter.toml")
    for folder in ("content", "layouts"):
        shutil.copytree(REPO / folder, root / folder, dirs_exist_ok=True)
    (root / "subscribers").mkdir(exist_ok=True)
    shutil.copy(REPO / "subscribers/goals.toml", root / "subscribers/goals.toml")
    return root


def paragraph(rng: random.Random, words: int) -> str:
    """A paragraph of plausible filler with some emphasis and a link."""
    out = [rng.choice(WORDS) for _ in range(words)]
    out[3] = f"**{out[3]}**"
    out[9] = f"[{out[9]}](https://example.org/{out[9]})"
    return " ".join(out).capitalize() + "."


def write_post(root: Path, slug: str, words: int = 1500, cards: int = 6, seed: int = 1) -> Path:
    """A post of about `words` words with headings, lists, goal blocks and exercise cards."""
    rng = random.Random(seed)
    exercises = sorted(p.stem for p in (root / "content/exercises").glob("*.md"))[:cards]
    body = ['Hi {{ first_name | default("runner") }},', ""]
    written = 0
    section = 0
    while written < words:
        section += 1
        body += [f"## Part {section}", ""]
        for _ in range(3):
            n = rng.randint(50, 90)
            body += [paragraph(rng, n), ""]
            written += n
        body += [f"- [[{rng.choice(exercises)}]] {rng.choice(WORDS)}" for _ in range(3)] + [""]
        if section % 3 == 0:
            body += ["::: only marathon ultra", paragraph(rng, 40), ":::", ""]
            written += 40
    path = root / "content/posts" / f"{slug}.md"
    path.write_text(f"""---
title: "Benchmark post {seed}"
date: 2026-11-20
topic: strength
exercises: [{", ".join(exercises)}]
preheader: "A generated post for benchmarks."
summary: "Generated."
status: ready
---
""" + "\n".join(body), encoding="utf-8")
    return path


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    """A one-line description of this machine for the report."""
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}"


def watch_peak(child: subprocess.Popen, peak: list[float]) -> None:
    """Keep the largest VmHWM (MB) of a running process in peak[0]."""
    while child.poll() is None:
        try:
            text = Path(f"/proc/{child.pid}/status").read_text()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        time.sleep(0.05)


def run_watched(args: list[str], cwd: Path, env: dict[str, str],
                stdout=None) -> tuple[int, str, float, float]:
    """Run one command: its exit status, what it printed (stderr, and stdout too unless
    `stdout` is a file to write it to), wall seconds and the child's own peak RSS (MB)."""
    start = time.perf_counter()
    child = subprocess.Popen(args, cwd=cwd, env=env, stdout=stdout or subprocess.PIPE,
                             stderr=subprocess.PIPE if stdout else subprocess.STDOUT)
    # The child's own high-water mark: ru_maxrss from wait4 would include this process's
    # memory at the moment of the (v)fork.
    peak = [0.0]
    watcher = threading.Thread(target=watch_peak, args=(child, peak), daemon=True)
    watcher.start()
    printed = (child.stderr if stdout else child.stdout).read().decode()
    status = child.wait()
    watcher.join(timeout=5)
    return status, printed, time.perf_counter() - start, peak[0]
