"""Signed reader tokens: genuine ones verify, altered, cross-purpose and expired ones do not."""

import pytest

from publisher.delivery.tokens import SECRET_FILE, Signer, load_secret
from publisher.errors import RunletterError

SECRET = "a-long-enough-secret-for-tests"


def test_a_token_verifies_for_its_reader_and_purpose():
    signer = Signer(SECRET)
    data = signer.verify("unsubscribe", signer.sign("unsubscribe", 42))
    assert data is not None and data.subscriber_id == 42 and data.purpose == "unsubscribe"


def test_an_altered_token_is_refused():
    signer = Signer(SECRET)
    token = signer.sign("unsubscribe", 42)
    id_hex, rest = token.split(".", 1)
    assert signer.verify("unsubscribe", f"{int(id_hex, 16) + 1:x}.{rest}") is None


def test_a_token_for_one_purpose_does_not_work_for_another():
    signer = Signer(SECRET)
    assert signer.verify("preferences", signer.sign("unsubscribe", 7)) is None


def test_a_token_from_another_secret_is_refused():
    token = Signer("another-secret-of-enough-length").sign("unsubscribe", 7)
    assert Signer(SECRET).verify("unsubscribe", token) is None


def test_an_expired_token_is_refused_and_known_as_expired():
    signer = Signer(SECRET)
    token = signer.sign("confirm", 5, ttl=60)
    assert signer.verify("confirm", token) is not None
    data = signer.verify("confirm", token)
    assert signer.verify("confirm", token, now=data.expires + 1) is None


def test_garbage_is_refused_without_raising():
    assert Signer(SECRET).verify("unsubscribe", "not-a-token") is None


def test_a_short_secret_is_an_error():
    with pytest.raises(RunletterError, match="too short"):
        Signer("short")


def test_a_missing_secret_is_generated_once_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv("RUNLETTER_SECRET", raising=False)
    first, told = load_secret(tmp_path, create=True)
    again, told_again = load_secret(tmp_path, create=True)
    assert first == again and told and told_again is None
    assert (tmp_path / SECRET_FILE).stat().st_mode & 0o777 == 0o600


def test_the_environment_secret_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNLETTER_SECRET", "from-the-environment-xyz")
    assert load_secret(tmp_path, create=True) == ("from-the-environment-xyz", None)
    assert not (tmp_path / SECRET_FILE).exists()


def test_a_token_is_bound_to_the_readers_address():
    signer = Signer(SECRET)
    token = signer.sign("unsubscribe", 42, bind="Ana@Example.com")
    assert signer.verify("unsubscribe", token, bind="ana@example.com").subscriber_id == 42
    # SQLite may hand id 42 to a new reader after a removal: the old link must not work.
    assert signer.verify("unsubscribe", token, bind="someone.else@example.com") is None
    assert signer.verify("unsubscribe", token, bind=lambda sid: None) is None
    assert signer.verify("unsubscribe", token,
                         bind=lambda sid: "ana@example.com" if sid == 42 else None) is not None


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644], ids=oct)
def test_a_secret_file_others_can_read_is_refused_with_the_chmod_to_run(tmp_path, monkeypatch,
                                                                        mode):
    monkeypatch.delenv("RUNLETTER_SECRET", raising=False)
    path = tmp_path / SECRET_FILE
    path.write_text("a-secret-long-enough-to-sign-with\n", encoding="utf-8")
    path.chmod(mode)
    with pytest.raises(RunletterError) as refused:
        load_secret(tmp_path, create=True)
    message = str(refused.value)
    assert f"chmod 600 {path}" in message and "\n" not in message
    assert message.startswith(f"{path}: ")
