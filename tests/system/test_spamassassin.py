"""Deliverability: a message publish really wrote, scored by SpamAssassin's local rules."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.support import import_sample
from tests.helpers.support import run_raising as run
from tests.samples import HIP_DRIVE as POST

SPAMASSASSIN = shutil.which("spamassassin")
pytestmark = pytest.mark.skipif(
    SPAMASSASSIN is None,
    reason="spamassassin is not installed (Debian package 'spamassassin'; .ci/run installs it)")

# Rules that judge how this test message travelled, not what we wrote in it. Anything else
# that fires is caused by our headers, HTML or text, and fails the test.
NOT_ABOUT_CONTENT = {
    "NO_RECEIVED",  # written straight to the outbox: no relay added a Received: header
    "NO_RELAYS",  # the same fact, seen from the relay checks
    "HTML_MESSAGE",  # informational, 0 points: the message has an HTML part, as every edition
}


def published_message(root: Path, goal: str) -> bytes:
    """The bytes of one message that `runletter publish` wrote for this goal's edition."""
    import_sample(root)
    assert run("publish", POST, "--yes").exit_code == 0
    for path in sorted((root / "outbox" / "new").glob("*")):
        raw = path.read_bytes()
        if email.message_from_bytes(raw)["X-Runletter-Edition"] == f"{POST}/{goal}":
            return raw
    raise AssertionError(f"publish wrote no {goal} message")


def rules_fired(message: bytes, home: Path) -> set[str]:
    """The rule names SpamAssassin's local tests (no network) report for a message."""
    # HOME: SpamAssassin writes a user_prefs file there on first run.
    out = subprocess.run([SPAMASSASSIN, "-t", "-L"], input=message, capture_output=True,
                         check=True, timeout=120, env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
    status = re.search(rb"^X-Spam-Status: .*?tests=(.*?)\s+autolearn=", out.stdout, re.S | re.M)
    assert status, out.stdout[:2000]
    return {r for r in re.split(r"[\s,]+", status.group(1).decode()) if r and r != "none"}


def test_no_spamassassin_rule_caused_by_the_content_fires_on_a_published_message(
        sample_root, tmp_path):
    fired = rules_fired(published_message(sample_root, "marathon"), tmp_path)
    assert fired - NOT_ABOUT_CONTENT == set()
