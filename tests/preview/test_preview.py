"""`runletter preview`: the page over real HTTP on 127.0.0.1, its frames, and live rebuilds."""

from __future__ import annotations

import http.client
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from publisher.cli.preview import preview_command
from publisher.errors import RunletterError
from publisher.preview import PreviewServer
from tests.helpers.support import import_sample
from tests.samples import HIP_DRIVE as POST
from tests.samples import HIP_DRIVE_GOALS
from tests.samples import HIP_DRIVE_SENTENCE as SENTENCE

TIMEOUT = 10  # seconds for any one HTTP answer


@pytest.fixture
def start_preview(sample_root: Path) -> Iterator[Callable[..., PreviewServer]]:
    """Start a preview of the sample newsletter on a free loopback port; stopped after."""
    servers: list[PreviewServer] = []

    def start(**options) -> PreviewServer:
        server = PreviewServer(sample_root, port=0, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def get(server: PreviewServer, path: str, status: int = 200) -> str:
    answer = requests.get(server.url + path.lstrip("/"), timeout=TIMEOUT)
    assert answer.status_code == status, answer.text[:500]
    return answer.text


def frames(page: str, width: int) -> list[str]:
    """The goals of the page's frames of one width, in order."""
    return re.findall(rf'<iframe [^>]*data-goal="([^"]+)" data-width="{width}"', page)


def findings(page: str) -> list[str]:
    """The finding lines on a page, as `runletter check` prints them."""
    return [unescape(m) for m in re.findall(r'<li class="(?:error|warning)"><code>(.*?)</code>',
                                            page)]


def plain_texts(page: str) -> list[str]:
    return [unescape(m) for m in re.findall(r'<pre class="plain"[^>]*>(.*?)</pre>', page, re.S)]


class Events:
    """A Server-Sent Events stream from /events, read line by line with a deadline."""

    def __init__(self, server: PreviewServer, timeout: float = 6.0):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
        self.conn.request("GET", "/events")
        self.answer = self.conn.getresponse()
        assert self.answer.status == 200
        assert self.answer.getheader("Content-Type").startswith("text/event-stream")

    def next(self) -> tuple[str, str]:
        """The next (event, data); a socket timeout fails the test."""
        event, data = "message", ""
        while True:
            raw = self.answer.readline()
            if not raw:
                raise ConnectionError("the event stream ended")
            line = raw.decode().rstrip("\n")
            if not line:
                if data or event != "message":
                    return event, data
                continue
            if line.startswith(":") or line.startswith("retry:"):
                continue
            name, _, value = line.partition(": ")
            if name == "event":
                event = value
            elif name == "data":
                data = value

    def wait_for(self, name: str, within: float = 5.0) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            event, data = self.next()
            if event == name:
                return data
        raise AssertionError(f"no '{name}' event within {within}s")

    def expect_quiet(self) -> None:
        """No event before the stream's timeout (the stream is unusable afterwards)."""
        with pytest.raises(TimeoutError):
            event = self.next()
            raise AssertionError(f"unexpected event {event}")

    def close(self) -> None:
        self.conn.close()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


# -- the pages -----------------------------------------------------------------------------


def test_listens_on_loopback_by_default(start_preview) -> None:
    server = start_preview()
    assert server.http.server_address[0] == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")


def test_post_list_links_every_post(start_preview, sample_root: Path) -> None:
    page = get(start_preview(), "/")
    slugs = sorted(p.stem for p in (sample_root / "content" / "posts").glob("*.md"))
    assert len(slugs) == 5
    for slug in slugs:
        assert f'href="/posts/{slug}/"' in page
    assert "Hip Drive: six moves for stronger hips" in page
    assert page.index(POST) < page.index("2026-09-15-motor-unit-activation")  # newest first


def test_post_page_shows_a_frame_pair_per_goal(start_preview) -> None:
    server = start_preview()
    page = get(server, f"/posts/{POST}/")
    assert frames(page, 600) == HIP_DRIVE_GOALS
    assert frames(page, 375) == HIP_DRIVE_GOALS
    for goal, label in (("5k", "5K"), ("comeback", "Comeback"), ("marathon", "Marathon")):
        assert f'id="goal-{goal}"' in page
        assert f"<h2>{label}" in page  # the goal label above its frames
    # the inbox row: sender, bold subject, grey preheader
    assert '<span class="from">Coach Maya Lind, DPT</span>' in page
    assert '<b class="subject">Hip Drive: six moves for stronger hips</b>' in page
    assert "Six moves, once or twice a week, before an easy run." in page
    # the plain-text part of each edition, merge fields filled with sample values
    texts = plain_texts(page)
    assert len(texts) == 6
    assert texts[0].startswith("Run Freely · 5K edition\nHip Drive")
    assert "Hi runner," in texts[0] and "YOUR EXERCISES (5K)" in texts[0]
    assert "Returning from injury?" in texts[5] and "Returning from injury?" not in texts[0]
    # runletter check has nothing to say about the sample post
    assert "0 errors, 0 warnings" in page
    assert findings(page) == []


def test_frames_serve_each_edition(start_preview) -> None:
    server = start_preview()
    html = get(server, f"/posts/{POST}/comeback.html")
    assert html.startswith("<!doctype html>") or "<html" in html[:200]
    assert '<base target="_blank">' in html
    assert "Hi runner," in html
    assert "Returning from injury?" in html
    assert "Comeback edition" in html
    answer = requests.get(server.url + f"posts/{POST}/comeback.html", timeout=TIMEOUT)
    assert "script-src 'none'" in answer.headers["Content-Security-Policy"]
    text = get(server, f"/posts/{POST}/5k.txt")
    assert "YOUR EXERCISES (5K)" in text and "Returning from injury?" not in text
    assert "not in this post's audience" in unescape(get(server, f"/posts/{POST}/general.html",
                                                         404))


def test_findings_show_for_a_post_with_a_problem(start_preview, sample_root: Path) -> None:
    slug = "2026-10-27-synchronicity"
    path = sample_root / "content" / "posts" / f"{slug}.md"
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^preheader:.*\n", "", text)
    text += "\nMore in [the archive](https://runfreely.example.org/posts/no-such-post/).\n"
    path.write_text(text, encoding="utf-8")
    page = get(start_preview(), f"/posts/{slug}/")
    lines = findings(page)
    assert any(line.startswith(f"content/posts/{slug}.md:3: warning: no preheader")
               for line in lines), lines
    assert any("error: link to 'https://runfreely.example.org/posts/no-such-post/' will not "
               "exist in the archive" in line for line in lines), lines
    assert "1 error, 1 warning" in page
    assert "No preheader: inboxes show the first words of the email" in page
    assert len(frames(page, 600)) == 7  # still rendered: a check error does not hide it


def test_a_post_that_does_not_load_is_listed_and_others_still_render(
        start_preview, sample_root: Path) -> None:
    slug = "2026-10-06-neuromuscular-efficiency"
    path = sample_root / "content" / "posts" / f"{slug}.md"
    edit(path, "date: 2026-10-06", "date: 2026-10-36")
    server = start_preview()
    index = get(server, "/")
    lines = findings(index)
    assert lines == [f"content/posts/{slug}.md:4: error: date '2026-10-36' is not a date; "
                     "write it as YYYY-MM-DD"], lines
    assert index.index(slug) < index.index(POST)  # the broken one comes first
    page = get(server, f"/posts/{slug}/")
    assert findings(page) == lines and frames(page, 600) == []
    page = get(server, f"/posts/{POST}/")  # check_posts cannot list the archive; we can
    assert findings(page) == [] and frames(page, 375) == HIP_DRIVE_GOALS


def test_unknown_post_is_a_404_with_a_suggestion(start_preview) -> None:
    server = start_preview()
    page = unescape(get(server, "/posts/2026-11-24-hip-drve/", 404))
    assert "no post '2026-11-24-hip-drve'" in page and "did you mean '2026-11-24-hip-drive'" in page
    get(server, "/posts/..%2F..%2Frunletter/", 404)  # a slug, never a path
    get(server, "/posts/%2e%2e/5k.html", 404)
    get(server, "/nothing-here", 404)


def test_other_host_names_are_refused(start_preview) -> None:
    server = start_preview()
    answer = requests.get(server.url, headers={"Host": f"attacker.example:{server.port}"},
                          timeout=TIMEOUT)
    assert answer.status_code == 403
    answer = requests.get(f"http://localhost:{server.port}/", timeout=TIMEOUT)
    assert answer.status_code == 200


def test_busy_port_is_a_clear_error(start_preview) -> None:
    server = start_preview()
    with pytest.raises(RunletterError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        PreviewServer(server.workspace.root, port=server.port)


def test_command_options() -> None:
    result = CliRunner().invoke(preview_command, ["--help"])
    assert result.exit_code == 0
    for option in ("--port", "--host", "--reader", "8100", "127.0.0.1"):
        assert option in result.output


def test_command_outside_a_newsletter_is_a_clear_error(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(preview_command, ["--port", "0"])
    assert isinstance(result.exception, RunletterError)
    assert "runletter.toml: not found" in str(result.exception)


def wait_for_output(child: subprocess.Popen, seconds: float = 15) -> None:
    """Wait until the child prints on stdout; if it does not, stop it and say what it said."""
    ready, _, _ = select.select([child.stdout], [], [], seconds)
    if not ready:
        child.kill()
        _, err = child.communicate(timeout=5)
        raise AssertionError(f"the preview printed nothing within {seconds} s; stderr: {err!r}")


def test_command_serves_until_interrupted(sample_root: Path) -> None:
    """The real command in a child process: it prints its URL, answers, and stops on Ctrl+C."""
    child = subprocess.Popen(
        [sys.executable, "-u", "-c", "from publisher.cli.preview import preview_command; "
         "preview_command(['--port', '0', '--reader', 'nobody@example.com'])"],
        cwd=sample_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        wait_for_output(child)
        line = child.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        assert "Hip Drive" in requests.get(url.group(0), timeout=TIMEOUT).text
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert "no subscriber store yet" in err  # --reader without a store says so
    assert "Traceback" not in err


def test_command_prints_the_projects_problems_as_check_does_then_a_summary_line(
        sample_root: Path) -> None:
    exercise = sample_root / "content/exercises/clam-shell.md"
    text = exercise.read_text()
    exercise.write_text(text.replace('name: "Clam shell"\n', ""))
    closing = text.split("\n").index("---", 1)  # its line number once 'name' is gone
    child = subprocess.Popen(
        [sys.executable, "-u", "-c", "from publisher.cli.preview import preview_command; "
         "preview_command(['--port', '0'])"],
        cwd=sample_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        wait_for_output(child)
        child.stdout.readline()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert err.splitlines()[:2] == [
        f"content/exercises/clam-shell.md:{closing}: error: missing required key 'name'",
        "1 error"]


# -- readers ---------------------------------------------------------------------------------


def test_reader_fills_the_merge_fields(start_preview, sample_root: Path) -> None:
    import_sample(sample_root)
    server = start_preview()
    page = get(server, f"/posts/{POST}/?reader=amara.okafor@example.com")
    assert "Hi Amara," in plain_texts(page)[0]
    assert "Amara gets this edition" in page  # her goal is 5k
    assert f'src="/posts/{POST}/5k.html?reader=amara.okafor%40example.com"' in page
    html = get(server, f"/posts/{POST}/5k.html?reader=amara.okafor@example.com")
    assert "Hi Amara," in html
    unsubscribe = re.findall(r'href="(https://runfreely\.example\.org/unsubscribe/[^"]+)"', html)
    sample = re.findall(r'href="(https://runfreely\.example\.org/unsubscribe/[^"]+)"',
                        get(server, f"/posts/{POST}/5k.html"))
    assert len(unsubscribe) == 1 and len(sample) == 1
    assert unsubscribe != sample  # a link signed for her, not the sample reader's
    # a name is HTML-escaped in the email and shown as written in the text
    html = get(server, f"/posts/{POST}/marathon.html?reader=darcy.obrien@example.org")
    assert "Hi D&#x27;Arcy," in html
    page = get(server, f"/posts/{POST}/?reader=darcy.obrien@example.org")
    assert "Hi D'Arcy," in plain_texts(page)[3]
    # the select list offers the store's readers (up to 50)
    options = re.findall(r'<option value="([^"]*)"', page)
    assert options[0] == "" and "amara.okafor@example.com" in options
    assert 2 < len(options) <= 51
    # an unknown reader falls back to sample values, and says so
    page = unescape(get(server, f"/posts/{POST}/?reader=nobody@example.com"))
    assert "no reader 'nobody@example.com' in the store" in page
    assert "Hi runner," in plain_texts(page)[0]


def test_reader_option_sets_the_default(start_preview, sample_root: Path) -> None:
    import_sample(sample_root)
    server = start_preview(reader="lukas.berger@example.org")
    page = get(server, f"/posts/{POST}/")
    assert "Hi Lukas," in plain_texts(page)[0]
    assert "Hi runner," in plain_texts(get(server, f"/posts/{POST}/?reader="))[0]


def test_without_a_store_merge_fields_show_sample_values(start_preview,
                                                         sample_root: Path) -> None:
    server = start_preview()
    page = unescape(get(server, f"/posts/{POST}/?reader=amara.okafor@example.com"))
    assert "there is no subscriber store yet" in page
    assert "<select" not in page
    assert "Hi runner," in plain_texts(page)[0]
    assert not (sample_root / "subscribers" / "runletter.db").exists()  # never created


# -- live rebuilds ---------------------------------------------------------------------------


def test_editing_the_post_pushes_a_reload_and_the_page_shows_the_edit(
        start_preview, sample_root: Path) -> None:
    server = start_preview()
    events = Events(server)
    try:
        first = events.wait_for("hello")
        assert SENTENCE in plain_texts(get(server, f"/posts/{POST}/"))[0]
        edit(sample_root / "content" / "posts" / f"{POST}.md", SENTENCE,
             "Give it three weeks, then tell me how the hills felt.")
        started = time.monotonic()
        second = events.wait_for("reload", within=5)
        assert time.monotonic() - started < 5
        assert second != first
    finally:
        events.close()
    page = get(server, f"/posts/{POST}/")
    assert f'data-generation="{second}"' in page
    texts = plain_texts(page)
    assert "Give it three weeks, then tell me how the hills felt." in texts[0]
    assert SENTENCE not in texts[0]
    assert "three weeks, then tell me" in get(server, f"/posts/{POST}/ultra.html")


def test_a_broken_edit_shows_the_error_and_a_fix_recovers(start_preview,
                                                          sample_root: Path) -> None:
    server = start_preview()
    path = sample_root / "content" / "posts" / f"{POST}.md"
    events = Events(server)
    try:
        events.wait_for("hello")
        edit(path, "6. [[hip-jack]]", "6. [[hip-jakc]]")
        events.wait_for("reload")
        page = get(server, f"/posts/{POST}/")
        assert findings(page) == [f"content/posts/{POST}.md:28: error: unknown exercise "
                                  "'hip-jakc' (did you mean 'hip-jack'?)"]
        assert frames(page, 600) == [] and frames(page, 375) == []
        assert "this post has errors" in get(server, f"/posts/{POST}/5k.html", 404)
        assert "Hip Drive" in get(server, "/")  # the server keeps running

        edit(path, "6. [[hip-jakc]]", "6. [[hip-jack]]")
        events.wait_for("reload")
        page = get(server, f"/posts/{POST}/")
        assert findings(page) == []
        assert frames(page, 600) == HIP_DRIVE_GOALS and frames(page, 375) == HIP_DRIVE_GOALS
    finally:
        events.close()


def test_a_broken_config_shows_on_every_page_and_recovers(start_preview,
                                                          sample_root: Path) -> None:
    server = start_preview()
    goals = sample_root / "subscribers" / "goals.toml"
    original = goals.read_text(encoding="utf-8")
    events = Events(server)
    try:
        events.wait_for("hello")
        goals.write_text(original + "\n[goals.trail\n", encoding="utf-8")
        events.wait_for("reload")
        for path in ("/", f"/posts/{POST}/"):
            page = get(server, path)
            assert "The project does not load" in page
            assert any(line.startswith("subscribers/goals.toml:") and "not valid TOML" in line
                       for line in findings(page)), findings(page)
        goals.write_text(original, encoding="utf-8")
        events.wait_for("reload")
        assert "The project does not load" not in get(server, "/")
        assert frames(get(server, f"/posts/{POST}/"), 600) == HIP_DRIVE_GOALS
    finally:
        events.close()


def test_only_content_layouts_and_config_trigger_a_rebuild(start_preview,
                                                           sample_root: Path) -> None:
    server = start_preview()
    events = Events(server, timeout=1.5)
    try:
        events.wait_for("hello")
        (sample_root / "notes.txt").write_text("not watched", encoding="utf-8")
        (sample_root / "subscribers" / "runletter.db-journal").write_bytes(b"x")
        (sample_root / "site").mkdir()
        (sample_root / "site" / "index.html").write_text("built", encoding="utf-8")
        events.expect_quiet()
    finally:
        events.close()
    events = Events(server)
    try:
        events.wait_for("hello")
        layout = sample_root / "layouts" / "email" / "base.mjml.j2"
        edit(layout, "#b45309", "#c2410c")
        events.wait_for("reload")
        config = sample_root / "runletter.toml"
        edit(config, 'name = "Run Freely"', 'name = "Run Freer"')
        events.wait_for("reload")
    finally:
        events.close()
    html = get(server, f"/posts/{POST}/5k.html")
    assert "#c2410c" in html
    assert "Run Freer" in html


def test_stop_ends_event_streams(start_preview) -> None:
    server = start_preview()
    events = Events(server)
    events.wait_for("hello")
    server.stop()
    with pytest.raises(ConnectionError):
        events.next()
    events.close()


def test_a_card_image_outside_content_shows_as_the_same_finding(start_preview,
                                                                 sample_root: Path) -> None:
    edit(sample_root / "content/exercises/clam-shell.md", "\nname:",
         '\nimage: "../subscribers/goals.toml"\nname:')
    page = get(start_preview(), "/")
    assert "The project does not load" in page
    assert findings(page) == ["content/exercises/clam-shell.md:3: error: image "
                              "'../subscribers/goals.toml' is outside content/"]
