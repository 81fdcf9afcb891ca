"""`runletter publish` killed with SIGKILL midway, then re-run: no reader gets two copies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

from publisher.store.ledger import Ledger
from tests.helpers.smtp_server import running_smtp
from tests.helpers.support import import_sample, project_store
from tests.samples import AUDIENCE, ON_BOTH_BACKENDS
from tests.samples import HIP_DRIVE as POST

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets


def publish(env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "publisher.cli", "publish", POST, "--yes", "--provider", "smtp",
         *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_publish_killed_midway_and_rerun_sends_no_duplicates(sample_root):
    import_sample(sample_root)
    with running_smtp(delay=0.03) as server:
        env = {**os.environ, "RUNLETTER_SMTP_HOST": server.host,
               "RUNLETTER_SMTP_PORT": str(server.port), "RUNLETTER_SMTP_SECURITY": "none"}
        first = publish(env)
        deadline = time.monotonic() + 30
        while len(server.messages) < 15 and time.monotonic() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert first.returncode == -signal.SIGKILL
        killed_at = len(server.messages)
        assert 15 <= killed_at < AUDIENCE, "the kill must land midway"

        second = publish(env)
        output, _ = second.communicate(timeout=60)
        assert second.returncode == 0, output

    received = Counter(rcpt for rcpts, _ in server.messages for rcpt in rcpts)
    assert max(received.values()) == 1, "a reader received two copies"
    with project_store(sample_root) as store:
        ledger = Ledger(store)
        in_flight = ledger.count(POST, "in-flight")
        sent = ledger.count(POST, "sent")
    # Everyone is either sent (and received exactly once) or reported in flight.
    assert sent + in_flight == AUDIENCE
    assert len(received) >= sent
    if in_flight:
        assert f"{in_flight} deliveries were in flight" in output
