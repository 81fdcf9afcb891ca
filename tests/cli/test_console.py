"""The CLI's voice: counts agree in number, and findings end with one summary line."""

from __future__ import annotations

from publisher.cli.console import plural, tally
from publisher.errors import Finding, finding_line


def test_a_count_takes_its_noun_in_the_right_number():
    assert [plural(1, "post"), plural(2, "post"), plural(0, "batch"), plural(1, "delivery"),
            plural(3, "delivery"), plural(1, "try"), plural(5, "try")] == [
        "1 post", "2 posts", "0 batches", "1 delivery", "3 deliveries", "1 try", "5 tries"]


def test_the_summary_counts_errors_then_warnings_and_leaves_out_none():
    error, warning = Finding("a.md", 1, "bad"), Finding("a.md", 2, "meh", "warning")
    assert [tally([error]), tally([warning, error, error]), tally([warning]), tally([])] == [
        "1 error", "2 errors, 1 warning", "1 warning", "no problems found"]


def test_a_finding_reads_path_line_level_message():
    assert finding_line(Finding("a.md", 3, "bad")) == "a.md:3: error: bad"
    assert finding_line(Finding("runletter", None, "oops", "warning")) == "runletter: warning: oops"
