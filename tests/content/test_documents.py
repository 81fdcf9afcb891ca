"""Front matter may not use YAML aliases: a billion-laughs bomb is refused on its line."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from publisher.content.documents import read_document
from publisher.errors import RunletterError

BOMB = "\n".join(["---", "title: Laughs", 'a: &a ["lol","lol","lol","lol","lol","lol","lol"]',
                  *(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]"
                    for i in range(8)),
                  "---", "Body.", ""])


def test_a_billion_laughs_post_is_refused_at_its_first_alias(tmp_path: Path):
    path = tmp_path / "bomb.md"
    path.write_text(BOMB, encoding="utf-8")
    try:
        read_document(path, tmp_path)
    except RunletterError as exc:
        assert [str(f) for f in exc.findings] == [
            "bomb.md:4: YAML aliases (*a) are not allowed in front matter; write the value out"]
    else:
        raise AssertionError("the bomb was read")


def test_check_refuses_a_billion_laughs_post_in_one_line(sample_root: Path):
    post = next((sample_root / "content" / "posts").glob("*.md"))
    post.write_text(BOMB, encoding="utf-8")
    # In a subprocess with a deadline: where aliases are allowed the bomb runs for minutes.
    done = subprocess.run([sys.executable, "-m", "publisher.cli", "check"], cwd=sample_root,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert (f"content/posts/{post.name}:4: error: YAML aliases (*a) are not allowed in "
            "front matter; write the value out") in done.stderr.splitlines()
    assert "Traceback" not in done.stderr


@given(st.from_regex(r"[a-z]{1,8}", fullmatch=True))
def test_any_alias_in_front_matter_is_refused_on_its_line(name: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.md"
        path.write_text(f"---\ntitle: x\nbase: &{name} 1\n\ncopy: *{name}\n---\nBody\n",
                        encoding="utf-8")
        try:
            read_document(path, Path(folder))
        except RunletterError as exc:
            assert [(f.line, f.message.split(" are ")[0]) for f in exc.findings] == [
                (5, f"YAML aliases (*{name})")]
        else:
            raise AssertionError("the alias was read")
