"""A provider's webhook settings are its own ([providers.NAME] webhook_*, or
RUNLETTER_<NAME>_WEBHOOK_*); older files that still have them in [serve] keep working, with
a warning naming the new place."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import requests

from publisher.config import load_config
from publisher.delivery.providers import REGISTRY, provider_class, registered_class
from publisher.delivery.providers.base import read_settings, unknown_env_settings
from publisher.delivery.providers.sendgrid import SendgridProvider
from publisher.errors import RunletterError
from publisher.serve.server import prepare
from publisher.store import Store
from tests.helpers import webhooks as wh
from tests.helpers.live_server import LiveServer, configure, post_json
from tests.helpers.support import copy_sample, forget_module, free_port

OLD_KEYS = {"postmark_webhook_user": ("postmark", "webhook_user"),
            "sendgrid_public_key": ("sendgrid", "webhook_public_key"),
            "ses_certificate": ("ses", "webhook_certificate"),
            "ses_topic_arn": ("ses", "webhook_topic_arn")}


def append(root: Path, text: str) -> None:
    with (root / "runletter.toml").open("a", encoding="utf-8") as toml:
        toml.write(text)


def line_of(root: Path, key: str) -> int:
    lines = (root / "runletter.toml").read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.startswith(f"{key} ="))


def test_a_webhook_setting_still_in_serve_is_read_as_its_providers_own(sample_root):
    configure(sample_root, 8000, sendgrid_public_key="key-text", ses_topic_arn=wh.TOPIC_ARN)
    config = load_config(sample_root)
    assert config.providers["sendgrid"]["webhook_public_key"] == "key-text"
    assert config.providers["ses"]["webhook_topic_arn"] == wh.TOPIC_ARN
    assert not hasattr(config.serve, "sendgrid_public_key")


def test_each_setting_still_in_serve_is_one_warning_naming_its_new_place(sample_root, capsys):
    (sample_root / "sns-cert.pem").write_bytes(wh.sns_certificate_pem())
    configure(sample_root, 8000, postmark_webhook_user="hooks",
              sendgrid_public_key=wh.sendgrid_public_key(), ses_certificate="sns-cert.pem",
              ses_topic_arn=wh.TOPIC_ARN)
    prepare(None, None, None, start=sample_root)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "has moved" in line]
    assert warnings == [
        f"warning: runletter.toml:{line_of(sample_root, old)}: [serve] {old} has moved: "
        f"write it as {key} in [providers.{provider}]"
        for old, (provider, key) in OLD_KEYS.items()]


def test_a_setting_in_both_places_is_taken_from_the_providers_table(sample_root):
    configure(sample_root, 8000, ses_topic_arn="arn:old")
    append(sample_root, '\n[providers.ses]\nwebhook_topic_arn = "arn:new"\n')
    assert load_config(sample_root).providers["ses"]["webhook_topic_arn"] == "arn:new"


def test_an_unknown_key_in_serve_is_still_an_error_with_a_suggestion(sample_root):
    configure(sample_root, 8000, signups_per_houre=5)
    with pytest.raises(RunletterError, match="unknown key 'signups_per_houre' in "
                                             r"\[serve\] \(did you mean 'signups_per_hour'"):
        load_config(sample_root)


def test_a_webhook_secret_written_in_runletter_toml_stops_serve(sample_root):
    append(sample_root, '\n[providers.postmark]\nwebhook_password = "oops-committed"\n')
    with pytest.raises(RunletterError, match="is a secret.*RUNLETTER_POSTMARK_WEBHOOK_PASSWORD"):
        prepare(None, None, None, start=sample_root)


def test_a_bad_key_in_its_new_place_is_named_there(sample_root):
    append(sample_root, '\n[providers.sendgrid]\nwebhook_public_key = "bm90IGEga2V5"\n')
    with pytest.raises(RunletterError) as caught:
        prepare(None, None, None, start=sample_root)
    assert str(caught.value.findings[0]) == (
        "runletter.toml: [providers.sendgrid] webhook_public_key is not a public key (paste "
        "the verification key SendGrid shows, base64)")


def test_the_environment_gives_a_webhook_setting_too(sample_root):
    config = load_config(sample_root)
    settings = read_settings(SendgridProvider, SendgridProvider.WebhookSettings, config,
                             {"RUNLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY": "from-env"})
    assert settings.webhook_public_key == "from-env"


def test_a_misspelled_webhook_variable_is_warned_about_with_the_right_name():
    [warning] = unknown_env_settings(SendgridProvider,
                                     {"RUNLETTER_SENDGRID_WEBHOOK_PUBLC_KEY": "x"})
    assert "(did you mean RUNLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY?)" in warning


def test_a_providers_webhook_needs_none_of_its_sending_packages(monkeypatch):
    monkeypatch.setitem(REGISTRY, "ses", "publisher.delivery.providers.ses.sending:SesProvider")
    forget_module(monkeypatch, "publisher.delivery.providers.ses.sending")
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ImportError
    assert registered_class("ses").WebhookSettings is not None
    with pytest.raises(RunletterError, match=r"pip install 'runletter\[ses\]'"):
        provider_class("ses")


# -- the webhooks, configured in their new places, over real HTTP ----------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    root = copy_sample(tmp_path_factory.mktemp("settings") / "news")
    port = free_port()
    (root / "sns-cert.pem").write_bytes(wh.sns_certificate_pem())
    configure(root, port)
    append(root, f'\n[providers.postmark]\nwebhook_user = "{wh.POSTMARK_USER}"\n'
                 f'\n[providers.sendgrid]\nwebhook_public_key = "{wh.sendgrid_public_key()}"\n'
                 f'\n[providers.ses]\nwebhook_certificate = "sns-cert.pem"\n'
                 f'webhook_topic_arn = "{wh.TOPIC_ARN}"\n')
    with Store.open(root / "subscribers" / "runletter.db") as store:
        for address in ("pm@example.org", "sg@example.org", "ses@example.org"):
            store.add(address, goal="5k")
    server = LiveServer(root, port, {"RUNLETTER_POSTMARK_WEBHOOK_PASSWORD":
                                     wh.POSTMARK_PASSWORD}).start()
    try:
        yield server
    finally:
        server.stop()


def test_postmark_takes_its_webhook_user_from_its_own_table(site):
    response = post_json(site, "postmark", wh.postmark_bounce("pm@example.org", "pm-1"),
                         {"Authorization": wh.postmark_auth()})
    assert response.status_code == 200 and site.reader("pm@example.org").status == "bounced"


def test_sendgrid_takes_its_public_key_from_its_own_table(site):
    body = json.dumps([wh.sendgrid_event("spamreport", "sg@example.org", "sgX1")]).encode()
    response = post_json(site, "sendgrid", body, wh.sendgrid_headers(body))
    assert response.status_code == 200 and site.reader("sg@example.org").status == "complained"


def test_ses_takes_its_certificate_and_topic_from_its_own_table(site):
    signed = wh.sign_sns(wh.sns_notification(wh.ses_bounce("ses@example.org", "ses-1")))
    response = post_json(site, "ses", signed, {"x-amz-sns-message-type": "Notification"})
    assert response.status_code == 200 and site.reader("ses@example.org").status == "bounced"
    assert requests.get(site.url("/healthz"), timeout=10).status_code == 200
