"""`runletter serve` for tests: gunicorn in a subprocess on a free port, and what a test does
with it (sign tokens, read the outbox, post webhooks, dump the store)."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import requests

from publisher.delivery.providers.mailgun import MailgunProvider
from publisher.delivery.providers.postmark.sending import PostmarkProvider
from publisher.delivery.tokens import Signer
from publisher.project import open_project
from publisher.store import Store
from tests.helpers import webhooks as wh
from tests.helpers.support import copy_sample, free_port, project_store
from tests.samples import DATABASE_URL, HOST, REPO, SECRET

CONFIRM_HOURS = 48  # the [serve] confirm_hours start_site sets


def configure(root: Path, port: int, **serve: object) -> None:
    """Point base_url at the test server and add a [serve] table."""
    path = root / "runletter.toml"
    text = re.sub(r"(?m)^base_url = .*$", f'base_url = "http://{HOST}:{port}"',
                  path.read_text(encoding="utf-8"))
    table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in serve.items())
    path.write_text(f"{text}\n[serve]\n{table}\n", encoding="utf-8")


class LiveServer:
    """`python -m publisher.serve` (gunicorn) in a subprocess, started and stopped in bounds."""

    def __init__(self, root: Path, port: int, env: dict[str, str] | None = None,
                 workers: int = 2):
        self.root, self.port, self.workers = root, port, workers
        self.env = {**os.environ, "RUNLETTER_SECRET": SECRET,
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                    **(env or {})}
        self.log_path = root.parent / f"serve-{port}.log"
        self.proc: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def start(self, timeout: float = 20.0) -> LiveServer:
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child writes it until stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "publisher.serve", "--host", HOST, "--port", str(self.port),
             "--workers", str(self.workers)],
            cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log()}")
            try:
                if requests.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not answer in {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # gunicorn: graceful stop of master + workers
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: master and workers
            self.proc.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- reading the store the server writes --------------------------------------------

    def store(self) -> Store:
        """The store the server writes: the database its environment names, else the
        project's."""
        url = self.env.get(DATABASE_URL)
        return Store.open(url) if url else project_store(self.root)

    def reader(self, address: str):
        with self.store() as store:
            return store.get(address)

    def history(self, address: str) -> list[tuple[str | None, str, str]]:
        with self.store() as store:
            return [(h.old_status, h.new_status, h.reason) for h in store.history(address)]


def webhook_env() -> dict[str, str]:
    """The webhook secrets serve reads from its environment, as the tests sign with them."""
    return {PostmarkProvider.env_name("webhook_password"): wh.POSTMARK_PASSWORD,
            MailgunProvider.env_name("webhook_signing_key"): wh.MAILGUN_KEY}


def start_site(root: Path, port: int, database_url: str | None = None,
               **serve: object) -> LiveServer:
    """Configure a copied sample newsletter, import its readers and start the server; its
    store is the one the environment names, or `database_url` ("" for the SQLite file)."""
    (root / "sns-cert.pem").write_bytes(wh.sns_certificate_pem())
    settings = {"confirm_hours": CONFIRM_HOURS, "signups_per_hour": 1000,
                "postmark_webhook_user": wh.POSTMARK_USER,
                "sendgrid_public_key": wh.sendgrid_public_key(),
                "ses_certificate": "sns-cert.pem", "ses_topic_arn": wh.TOPIC_ARN, **serve}
    configure(root, port, **settings)
    env = webhook_env() if database_url is None else {**webhook_env(),
                                                      DATABASE_URL: database_url}
    live = LiveServer(root, port, env)
    with live.store() as store:
        report = store.import_csv(root / "subscribers" / "sample.csv", open_project(root).goals)
    assert report.skipped == 0
    return live.start()


signer = Signer(SECRET)  # the server's own: it signs with RUNLETTER_SECRET = SECRET


def messages_to(root: Path, address: str) -> list[EmailMessage]:
    """Messages in the outbox Maildir for one address, oldest first."""
    found = []
    for path in sorted((root / "outbox" / "new").glob("*"), key=lambda p: p.name):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if address.lower() in str(message["To"]).lower():
            found.append(message)
    return found


def link_in(message: EmailMessage, purpose: str) -> str:
    """The /PURPOSE/… link in the message's plain text."""
    text = message.get_body(("plain",)).get_content()
    match = re.search(rf"https?://\S+/{purpose}/\S+", text)
    assert match, f"no /{purpose}/ link in:\n{text}"
    return match.group(0)


def token_for(site: LiveServer, purpose: str, address: str, ttl: int | None = None,
              item: str = "") -> str:
    """A token for the reader at this address (about `item`, e.g. a gated step), as the
    server would sign it."""
    reader = site.reader(address)
    assert reader is not None
    return signer.sign(purpose, reader.id, ttl, bind=reader.email, item=item)


def store_contents(site: LiveServer) -> list[str]:
    """Every row of every table of the server's store, as SQL."""
    from tests.helpers.support import store_rows

    with site.store() as store:
        return store_rows(store)


def post_json(site: LiveServer, provider: str, payload, headers=None) -> requests.Response:
    """POST a webhook body (JSON-encoded unless it is bytes) to /webhooks/PROVIDER."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return requests.post(site.url(f"/webhooks/{provider}"), data=body, timeout=10,
                         headers={"Content-Type": "application/json", **(headers or {})})


def form_token(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def signup(site: LiveServer, address: str, first_name: str = "", goal: str = "general",
           session: requests.Session | None = None, **fields: str) -> requests.Response:
    """Sign up through /subscribe; `fields` are the form's other fields (race_date, …)."""
    session = session or requests.Session()
    page = session.get(site.url("/subscribe"), timeout=10)
    assert page.status_code == 200
    return session.post(site.url("/subscribe"), timeout=10, data={
        "email": address, "first_name": first_name, "goal": goal,
        "csrf": form_token(page.text), **fields})


def press_confirm(link: str) -> requests.Response:
    """What a reader does: open the confirmation link, then press the page's button."""
    page = requests.get(link, timeout=10)
    assert page.status_code == 200 and '<form method="post"' in page.text, page.text
    return requests.post(link, timeout=10)


def same_page(response: requests.Response) -> tuple[int, str]:
    """Status and body with the per-response CSP nonce taken out."""
    return response.status_code, re.sub(r'nonce="[^"]*"', 'nonce=""', response.text)


@contextmanager
def sample_site(folder: Path, database_url: str) -> Iterator[LiveServer]:
    """`runletter serve` on a copy of the sample in `folder`, on that store; stopped after."""
    server = start_site(copy_sample(folder), free_port(), database_url)
    try:
        yield server
    finally:
        server.stop()
