"""A provider is one module and one registry line: a toy provider written into a temporary
module sends a post, then reports a bounce through `runletter serve`'s webhook route."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from publisher.cli import main
from publisher.delivery.providers import REGISTRY
from publisher.serve.server import prepare, run_server
from publisher.store import Store
from tests.helpers.live_server import LiveServer, configure
from tests.helpers.support import free_port
from tests.samples import MOTOR_UNITS as POST

TOKEN = "toy-webhook-token-7"
READERS = ["ada@example.org", "bo@example.org", "cy@example.org"]

TOY = '''
"""A toy provider: 'sends' by writing a line per message; takes bounces by webhook."""

from __future__ import annotations

import json
from dataclasses import dataclass

from publisher.delivery.providers.base import ACCEPTED, Provider, Receipt, secret
from publisher.delivery.providers.webhook import Event, WebhookError, WebhookReport, read_json


@dataclass(frozen=True)
class Settings:
    sent_log: str = "toy-sent.jsonl"


@dataclass(frozen=True)
class WebhookSettings:
    webhook_token: str = secret()


class ToyProvider(Provider):
    name = "toy"
    max_batch = 2
    Settings = Settings
    WebhookSettings = WebhookSettings

    def send(self, batch):
        with open(self.config.root / self.settings.sent_log, "a") as log:
            for r in batch.recipients:
                log.write(json.dumps({"to": r.email, "id": f"toy-{r.subscriber_id}"}) + "\\n")
        return [Receipt(r.subscriber_id, ACCEPTED, provider_id=f"toy-{r.subscriber_id}")
                for r in batch.recipients]

    @classmethod
    def verify_webhook(cls, settings, request):
        if request.headers.get("X-Toy-Token") != settings.webhook_token:
            raise WebhookError(401, "wrong token")
        return read_json(request.read())

    @classmethod
    def parse_events(cls, payload):
        return WebhookReport(events=tuple(Event(b["to"], "bounce", b["why"], (b["id"],))
                                          for b in payload["bounces"]))
'''


class ForkedServer(LiveServer):
    """`runletter serve`'s own gunicorn, forked from this process: it has the test's
    registry and module path, which a fresh `python -m publisher.serve` would not."""

    def start(self, timeout: float = 20.0) -> ForkedServer:
        app, options, _ = prepare(None, self.port, self.workers, start=self.root)
        self.process = multiprocessing.get_context("fork").Process(
            target=run_server, args=(app, options))
        self.process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.is_alive():
            try:
                if requests.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the forked server did not answer")

    def stop(self) -> None:
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGTERM)  # gunicorn: graceful stop
            self.process.join(15)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


@pytest.fixture
def toy(sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The toy provider's module on sys.path, its one registry line, and a few readers."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "toy_provider.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    monkeypatch.setitem(REGISTRY, "toy", "toy_provider:ToyProvider")
    monkeypatch.setenv("RUNLETTER_TOY_WEBHOOK_TOKEN", TOKEN)
    with Store.open(sample_root / "subscribers" / "runletter.db") as store:
        for address in READERS:
            store.add(address, goal="5k")
    return sample_root


def test_a_toy_provider_in_its_own_module_publishes_and_takes_a_bounce_by_webhook(toy):
    port = free_port()
    configure(toy, port)
    result = CliRunner().invoke(main, ["publish", POST, "--yes", "--provider", "toy"])
    assert result.exit_code == 0, result.output
    sent = [json.loads(line) for line in (toy / "toy-sent.jsonl").read_text().splitlines()]
    assert sorted(m["to"] for m in sent) == READERS
    bounced = next(m for m in sent if m["to"] == READERS[1])

    server = ForkedServer(toy, port, workers=1).start()
    try:
        body = {"bounces": [{"to": bounced["to"], "id": bounced["id"], "why": "mailbox gone"}]}
        refused = requests.post(server.url("/webhooks/toy"), json=body, timeout=10,
                                headers={"X-Toy-Token": "guess"})
        assert refused.status_code == 401
        assert server.reader(READERS[1]).status == "active"
        taken = requests.post(server.url("/webhooks/toy"), json=body, timeout=10,
                              headers={"X-Toy-Token": TOKEN})
        assert taken.status_code == 200 and taken.json()["changed"] == 1
    finally:
        server.stop()
    assert [server.reader(a).status for a in READERS] == ["active", "bounced", "active"]
    assert server.history(READERS[1])[-1] == ("active", "bounced",
                                              "toy webhook: bounce: mailbox gone")
    with server.store() as store:
        state, error = store.conn.execute(
            "SELECT state, error FROM deliveries WHERE post = :post AND email = :email",
            {"post": POST, "email": READERS[1]}).fetchone()
    assert (state, error) == ("rejected", "bounce (toy): mailbox gone")
