"""A refusal of the message or the sender changes no reader and stops the run; only an answer
about one recipient's address bounces them (a real SMTP server, the contract servers, the
CLI and the real SQLite ledger)."""

from __future__ import annotations

from collections import Counter

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.delivery.providers.base import ProviderConfigError
from publisher.delivery.providers.mailgun import MailgunProvider
from publisher.delivery.providers.sendgrid import SendgridProvider
from tests.contract import running
from tests.helpers.provider_scenarios import (
    bounced_readers,
    ledger_states,
    provider_env,
    send_with_ledger,
)
from tests.helpers.smtp_server import DMARC, running_smtp
from tests.helpers.support import import_sample, project_store
from tests.samples import AUDIENCE, HIP_DRIVE_GOALS
from tests.samples import HIP_DRIVE as POST


def publish_over(server):
    """`runletter publish POST --yes --provider smtp` against this server."""
    env = {"RUNLETTER_SMTP_HOST": server.host, "RUNLETTER_SMTP_PORT": str(server.port),
           "RUNLETTER_SMTP_SECURITY": "none"}
    return CliRunner().invoke(main, ["publish", POST, "--yes", "--provider", "smtp"], env=env)


def statuses(root) -> Counter:
    with project_store(root) as store:
        return Counter(s.status for s in store.list())


# -- a whole publish ----------------------------------------------------------------------


def test_a_dmarc_refusal_of_every_message_bounces_nobody_and_exits_1(sample_root):
    import_sample(sample_root)
    before = statuses(sample_root)
    with running_smtp() as server:
        server.handler.refuse_data = DMARC
        result = publish_over(server)
    assert result.exit_code == 1
    [line] = [x for x in result.stderr.splitlines() if "refused the message" in x]
    assert "554 5.7.1 Message rejected: DMARC policy" in line
    assert "SPF, DKIM and DMARC" in line and "run publish again" in line
    assert "Traceback" not in result.output
    assert statuses(sample_root) == before
    assert ledger_states(sample_root) == Counter({"planned": AUDIENCE})


def test_after_a_refused_message_is_fixed_a_rerun_sends_everyone_once(sample_root):
    import_sample(sample_root)
    before = statuses(sample_root)
    with running_smtp() as server:
        server.handler.refuse_data, server.handler.refuse_data_after = DMARC, 20
        assert publish_over(server).exit_code == 1
        server.handler.refuse_data = None  # the author fixed the domain's records
        result = publish_over(server)
        assert result.exit_code == 0, result.output
        counts = Counter(to for tos, _data in server.messages for to in tos)
    assert len(counts) == AUDIENCE and set(counts.values()) == {1}
    assert ledger_states(sample_root) == Counter({"sent": AUDIENCE})
    assert statuses(sample_root) == before


def test_a_reader_refused_by_policy_on_every_try_stays_active(sample_root):
    import_sample(sample_root)
    text = (sample_root / "runletter.toml").read_text(encoding="utf-8")
    (sample_root / "runletter.toml").write_text(
        text.replace("backoff_base = 1.0", "backoff_base = 0.001")
        .replace("backoff_max = 60.0", "backoff_max = 0.01"), encoding="utf-8")
    with project_store(sample_root) as store:
        victim = next(s for s in store.list(status="active", goal="marathon")).email
    with running_smtp(refuse={victim: "550 5.7.1 Recipient rejected by policy"}) as server:
        result = publish_over(server)
    assert result.exit_code == 1
    assert "1 delivery failed after 5 tries" in result.stderr
    with project_store(sample_root) as store:
        assert store.get(victim).status == "active"
    assert ledger_states(sample_root) == Counter({"sent": AUDIENCE - 1, "failed": 1})


# -- an HTTP provider ---------------------------------------------------------------------


def test_a_sendgrid_400_about_one_readers_header_rejects_their_copy_without_bouncing(
        sample_root):
    import_sample(sample_root)
    bounced = bounced_readers(sample_root)
    with running("sendgrid") as server:
        server.fail_next(400, body={"errors": [{
            "message": "Invalid header value", "field": "personalizations.0.headers",
            "help": None}]})
        outcome = send_with_ledger(sample_root, SendgridProvider,
                                   provider_env("sendgrid", server))
    assert sum(outcome.rejected.values()) == 1
    assert sum(outcome.sent.values()) == AUDIENCE - 1
    assert bounced_readers(sample_root) == bounced  # nobody new
    assert ledger_states(sample_root) == Counter({"sent": AUDIENCE - 1, "rejected": 1})


def test_a_mailgun_400_about_the_sender_stops_even_when_the_sender_is_a_reader(sample_root):
    import_sample(sample_root)
    with project_store(sample_root) as store:
        # In the first call: the first goal's.
        author = next(s for s in store.list(status="active", goal=HIP_DRIVE_GOALS[0])).email
    before = statuses(sample_root)
    with running("mailgun") as server:
        server.fail_next(400, body={"message": f"'from' parameter is not a valid address: "
                                               f"{author}"})
        with pytest.raises(ProviderConfigError, match="nothing was sent"):
            send_with_ledger(sample_root, MailgunProvider, provider_env("mailgun", server))
    assert statuses(sample_root) == before
    assert ledger_states(sample_root) == Counter({"planned": AUDIENCE})
