"""The sample newsletter's sequences: marked as example content, and naming only exercises and
goals the sample has (until `runletter check` reads sequences, this is their safety net)."""

from __future__ import annotations

import tomllib

from publisher.content.documents import read_document
from publisher.content.posts import load_catalogue, load_goals
from publisher.content.syntax import EXERCISE_LINK
from tests.samples import REPO

SEQUENCES = REPO / "content" / "sequences"
EXAMPLE_MARK = '# Example content for the fictional newsletter "Run Freely".'


def sample_steps():
    """Every step file of every sample sequence, in order."""
    return sorted(SEQUENCES.glob("*/*.md"))


def test_the_sample_has_a_welcome_a_marathon_build_and_a_comeback_sequence():
    assert sorted(p.parent.name for p in SEQUENCES.glob("*/sequence.toml")) == [
        "comeback", "marathon-build", "welcome"]


def test_every_file_of_the_sample_sequences_is_marked_as_example_content():
    files = sorted(SEQUENCES.glob("*/sequence.toml")) + sample_steps()
    unmarked = [str(p.relative_to(REPO)) for p in files
                if EXAMPLE_MARK not in p.read_text(encoding="utf-8").splitlines()[:3]]
    assert files and unmarked == []


def test_every_exercise_a_sample_step_names_is_in_the_catalogue():
    catalogue = load_catalogue(REPO / "content", REPO)
    unknown = []
    for path in sample_steps():
        document = read_document(path, REPO)
        named = [*document.meta.get("exercises", []), *EXERCISE_LINK.findall(document.body)]
        unknown += [f"{path.name}: {slug}" for slug in named if catalogue.get(slug) is None]
    assert sample_steps() and unknown == []


def test_every_goal_a_sample_sequence_is_for_is_in_goals_toml():
    goals = load_goals(REPO / "subscribers" / "goals.toml", REPO)
    audiences = [tomllib.loads(p.read_text(encoding="utf-8")).get("audience", [])
                 for p in SEQUENCES.glob("*/sequence.toml")]
    unknown = [goal for audience in audiences for goal in audience if goals.get(goal) is None]
    assert audiences and unknown == []
