"""runletter.toml is checked key by key; every mistake names the file, the line and a fix."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from publisher.commands.init import SKELETON
from publisher.config import TABLES, Schedule, load_config
from publisher.delivery.providers import registered_class
from publisher.delivery.providers.base import setting_names
from publisher.errors import RunletterError
from tests.samples import FIXTURE
from tests.samples import REPO as REPO_ROOT

BASE = """\
[newsletter]
name = "Fixture Weekly"
base_url = "https://fixture.example.org"
postal_address = "Fixture Weekly, 1 Test Lane, Testville"
topics = ["strength", "physio"]

[sender]
name = "Coach Fixture"
email = "coach@fixture.example.org"
"""


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "runletter.toml").write_text(text, encoding="utf-8")
    return tmp_path


def findings_of(root: Path) -> list[str]:
    with pytest.raises(RunletterError) as caught:
        load_config(root)
    return [str(f) for f in caught.value.findings]


def test_a_minimal_config_loads_with_defaults_filled_in(tmp_path):
    config = load_config(write_config(tmp_path, BASE))
    assert config.name == "Fixture Weekly"
    assert config.topics == ("strength", "physio")
    assert config.utm.source == "runletter"
    assert config.utm.campaign == "{slug}"
    assert config.reply_to == "coach@fixture.example.org"
    assert config.content_dir == tmp_path / "content"
    assert config.site_dir == tmp_path / "site"
    assert config.delivery.provider == "outbox"


def test_an_unknown_key_names_the_file_the_line_and_the_closest_key(tmp_path):
    text = BASE.replace('topics = ["strength", "physio"]\n',
                        'topics = ["strength", "physio"]\npostal_adress = "typo"\n')
    assert findings_of(write_config(tmp_path, text)) == [
        "runletter.toml:6: unknown key 'postal_adress' in [newsletter] "
        "(did you mean 'postal_address'?)"
    ]


def test_an_unknown_table_names_its_line_and_the_closest_table(tmp_path):
    text = BASE + '\n[delivry]\nprovider = "smtp"\n'
    assert findings_of(write_config(tmp_path, text)) == [
        "runletter.toml:11: unknown table [delivry] (did you mean 'delivery'?)"
    ]


def test_a_missing_postal_address_is_an_error_pointing_at_its_table(tmp_path):
    text = BASE.replace('postal_address = "Fixture Weekly, 1 Test Lane, Testville"\n', "")
    assert findings_of(write_config(tmp_path, text)) == [
        "runletter.toml:1: missing required key 'postal_address' in [newsletter]"
    ]


def test_topics_given_as_a_string_instead_of_a_list_is_a_type_error(tmp_path):
    text = BASE.replace('topics = ["strength", "physio"]', 'topics = "x"')
    assert findings_of(write_config(tmp_path, text)) == [
        "runletter.toml:5: [newsletter] topics must be a list"
    ]


def test_topics_that_are_not_all_strings_are_an_error(tmp_path):
    text = BASE.replace('topics = ["strength", "physio"]', 'topics = ["strength", 3]')
    assert findings_of(write_config(tmp_path, text)) == [
        "runletter.toml:5: [newsletter] topics must be a list of strings"
    ]


def test_a_base_url_without_a_scheme_is_an_error(tmp_path):
    text = BASE.replace('"https://fixture.example.org"', '"fixture.example.org"')
    assert findings_of(write_config(tmp_path, text)) == [
        "runletter.toml:3: [newsletter] base_url must start with https:// (or http://)"
    ]


def test_a_trailing_slash_on_the_base_url_is_dropped(tmp_path):
    text = BASE.replace('"https://fixture.example.org"', '"https://fixture.example.org/"')
    config = load_config(write_config(tmp_path, text))
    assert config.base_url == "https://fixture.example.org"
    assert config.archive_url("posts/x/") == "https://fixture.example.org/posts/x/"


def test_a_newline_in_the_sender_name_is_refused_because_it_goes_in_a_header(tmp_path):
    text = BASE.replace('name = "Coach Fixture"', 'name = "Coach\\nFixture"')
    assert findings_of(write_config(tmp_path, text)) == [
        "runletter.toml:8: [sender] name must be on one line (it goes in a header)"
    ]


def test_a_sender_email_that_is_not_an_address_is_an_error(tmp_path):
    text = BASE.replace('"coach@fixture.example.org"', '"coach at fixture"')
    assert findings_of(write_config(tmp_path, text)) == [
        "runletter.toml:9: [sender] email 'coach at fixture' is not an email address"
    ]


@pytest.mark.parametrize("email", ["coach@fixture.example.org", "coach+news@mail.example.co.uk",
                                   "o'brien@fixture.example.org", "coach@bücher.example"])
def test_a_sender_email_the_store_would_take_is_accepted(tmp_path, email):
    text = BASE.replace('"coach@fixture.example.org"', f'"{email}"')
    assert load_config(write_config(tmp_path, text)).sender_email == email


@pytest.mark.parametrize("email", ["coach at fixture", "coach@localhost", "a@b@fixture.org",
                                   " coach@fixture.example.org", "coach@fixture.example.org\t",
                                   "@fixture.example.org", "coach@"])
def test_a_sender_email_the_store_would_refuse_is_an_error(tmp_path, email):
    text = BASE.replace('"coach@fixture.example.org"', f'"{email}"')
    assert findings_of(write_config(tmp_path, text)) == [
        f"runletter.toml:9: [sender] email '{email}' is not an email address"
    ]


def test_every_deprecated_key_moves_to_a_setting_its_provider_has():
    for table, cls in TABLES.items():
        for old, deprecated in getattr(cls, "deprecated", {}).items():
            providers, _, name = deprecated.table.partition(".")
            assert providers == "providers", (table, old)
            assert deprecated.key in setting_names(registered_class(name)), (table, old)


def test_a_whole_number_where_a_string_is_expected_is_a_type_error(tmp_path):
    text = BASE + "\n[utm]\nsource = 5\n"
    assert findings_of(write_config(tmp_path, text)) == [
        "runletter.toml:12: [utm] source must be a string"
    ]


def test_every_problem_is_reported_at_once(tmp_path):
    text = (BASE.replace('"https://fixture.example.org"', '"fixture.example.org"')
            .replace('email = "coach@fixture.example.org"',
                     'email = "coach@fixture.example.org"\nnmae = "x"'))
    assert findings_of(write_config(tmp_path, text)) == [
        "runletter.toml:10: unknown key 'nmae' in [sender] (did you mean 'name'?)",
        "runletter.toml:3: [newsletter] base_url must start with https:// (or http://)",
    ]


def test_invalid_toml_is_reported_with_its_line(tmp_path):
    text = BASE.replace('name = "Coach Fixture"', 'name = "Coach Fixture')
    [finding] = findings_of(write_config(tmp_path, text))
    assert finding.startswith("runletter.toml:8: not valid TOML")


def test_a_missing_config_file_says_how_to_create_one(tmp_path):
    assert findings_of(tmp_path) == [
        "runletter: runletter.toml: not found; run 'runletter init DIR' to create one"
    ]


def test_the_sample_config_at_the_repo_root_loads():
    config = load_config(REPO_ROOT)
    assert config.name == "Run Freely"
    assert config.base_url == "https://runfreely.example.org"
    assert "strength" in config.topics
    assert config.unsubscribe_mailto == "unsubscribe@runfreely.example.org"
    assert config.store_path == REPO_ROOT / "subscribers" / "runletter.db"


@pytest.mark.parametrize("folder", [REPO_ROOT, SKELETON], ids=["sample", "skeleton"])
def test_the_shipped_configs_spell_out_every_schedule_setting(folder):
    table = tomllib.loads((folder / "runletter.toml").read_text(encoding="utf-8"))["schedule"]
    assert set(table) == {field.name for field in fields(Schedule)}
    assert load_config(folder).schedule == Schedule(**table)


def test_the_fixture_project_config_loads():
    config = load_config(FIXTURE)
    assert config.name == "Fixture Weekly"
    assert config.base_url == "https://fixture.example.org"
    assert config.postal_address == "Fixture Weekly, 1 Test Lane, Testville, TS 00001, USA"
    assert config.topics == ("strength", "physio")


def test_a_whole_number_where_a_number_is_expected_is_read_as_a_number(tmp_path):
    config = load_config(write_config(tmp_path, BASE + "\n[delivery]\nbackoff_max = 90\n"))
    assert config.delivery.backoff_max == 90.0
    assert isinstance(config.delivery.backoff_max, float)


def test_true_is_not_a_number_of_attempts(tmp_path):
    text = BASE + "\n[delivery]\nmax_attempts = true\n"
    assert findings_of(write_config(tmp_path, text)) == [
        "runletter.toml:12: [delivery] max_attempts must be a whole number"
    ]


def test_every_mistake_in_every_table_is_reported_at_once(tmp_path):
    text = BASE.replace('name = "Coach Fixture"\n', "") + '\n[serve]\nport = "80"\nworkrs = 3\n'
    assert findings_of(write_config(tmp_path, text)) == [
        "runletter.toml:7: missing required key 'name' in [sender]",
        "runletter.toml:12: unknown key 'workrs' in [serve] (did you mean 'workers'?)",
        "runletter.toml:11: [serve] port must be a whole number",
    ]
