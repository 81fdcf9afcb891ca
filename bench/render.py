"""Time to render one edition of a 1,500-word post with six exercise cards.

Run by hand: `python bench/render.py [--words N] [--cards N]`. Compares the MJML step with
node's `mjml` on the same source when node and the npm package are there
(`npm install --prefix bench/.node mjml`).
Targets: <= 2 ms per edition, >= 20x faster than node's mjml.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mjml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sample import arguments, copy_sample, machine, write_post  # noqa: E402

from publisher.project import open_project  # noqa: E402
from publisher.render.email import EmailRenderer  # noqa: E402

NODE_MJML = Path(__file__).resolve().parent / ".node" / "node_modules" / "mjml"


def best_of(fn, repeat: int = 5, number: int = 20) -> float:
    """Best mean seconds per call over `repeat` runs of `number` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def node_ms(source: str, number: int = 50) -> float | None:
    """Milliseconds per compile of the same MJML by node's mjml in a warm process."""
    if not shutil.which("node") or not NODE_MJML.exists():
        return None
    script = f"""
const mjml = require({json.dumps(str(NODE_MJML))});
const fs = require('fs');
const src = fs.readFileSync(process.argv[2], 'utf8');
for (let i = 0; i < 5; i++) mjml(src, {{validationLevel: 'skip'}});
let best = Infinity;
for (let r = 0; r < 5; r++) {{
  const t = process.hrtime.bigint();
  for (let i = 0; i < {number}; i++) mjml(src, {{validationLevel: 'skip'}});
  best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e6 / {number});
}}
console.log(best);
"""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in.mjml").write_text(source, encoding="utf-8")
        (Path(tmp) / "run.js").write_text(script, encoding="utf-8")
        out = subprocess.run(["node", str(Path(tmp) / "run.js"), str(Path(tmp) / "in.mjml")],
                             capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise SystemExit(f"node mjml failed: {out.stderr.strip()[:600]}")
    return float(out.stdout.strip())


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--words", type=int, default=1500, metavar="N",
                        help="words in the generated post (default: 1500)")
    parser.add_argument("--cards", type=int, default=6, metavar="N",
                        help="exercise cards in it (default: 6)")
    args = parser.parse_args()
    root = copy_sample()
    write_post(root, "2026-11-20-bench", words=args.words, cards=args.cards)
    project = open_project(root)
    resolved = project.resolve(project.post("2026-11-20-bench"))
    renderer = EmailRenderer(project.config)
    goals = list(resolved.audience)
    marathon = project.goals.get("marathon")

    prepared = renderer.prepare(resolved)
    prepare_s = best_of(lambda: renderer.prepare(resolved), number=5)
    edition_s = best_of(lambda: renderer.edition(prepared, marathon))
    all_s = best_of(lambda: renderer.editions(resolved), number=5)
    per_edition_all = all_s / len(goals)
    source, _ = renderer.sources(prepared, marathon)
    mrml_s = best_of(lambda: mjml.mjml2html(source))
    node = node_ms(source)
    words = len(resolved.post.body.split())

    print(f"machine: {machine()}")
    print(f"post: {words} words, {len(resolved.exercises)} exercise cards, "
          f"{len(goals)} editions, MJML source {len(source) // 1024} KB")
    print(f"markdown once per post (prepare):       {prepare_s * 1000:8.2f} ms")
    print(f"one edition (Jinja2 + MJML + UTM):      {edition_s * 1000:8.2f} ms   target <= 2 ms")
    print(f"all {len(goals)} editions incl. markdown, per edition: "
          f"{per_edition_all * 1000:6.2f} ms")
    print(f"MJML step alone, mjml-python (MRML):    {mrml_s * 1000:8.2f} ms")
    if node is None:
        print("MJML step, node mjml:                   skipped (no node or no "
              "bench/.node/node_modules/mjml; npm install --prefix bench/.node mjml)")
    else:
        print(f"MJML step, node mjml (warm process):    {node:8.2f} ms   "
              f"MRML is {node / (mrml_s * 1000):.0f}x faster (target >= 20x)")
        print(f"one edition vs node's MJML step alone:  {node / (edition_s * 1000):8.1f}x")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
