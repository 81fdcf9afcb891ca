"""Adversarial properties for readers' data: CSV in and out, and the headers their values fill.

Each test states an invariant and lets hypothesis look for a counter-example among hostile
inputs: formulas, quotes, specials, BOMs, CRLF, long fields, foreign encodings, Unicode line
separators. A failure here is a hole; the example hypothesis prints is the reproduction.
"""

from __future__ import annotations

import csv
import dataclasses
import email
import email.policy
import io
import re
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from publisher.delivery.address import HeaderInjection
from publisher.emails import canonical, mailbox_key
from publisher.errors import RunletterError
from publisher.store import (
    LEFT,
    MAX_NAME,
    STATUSES,
    Store,
    neutralise_cell,
    restore_cell,
    validate_email,
)
from tests.helpers.support import address_in, open_store
from tests.samples import FAST, GOALS, HEADER
from tests.samples import HIP_DRIVE as SLUG

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
SPECIALS = "\"(),:;<>@[\\] \t"
# Pieces that have broken headers and spreadsheets before, mixed into generated text.
TRICKY = ['"', "\\", ",", "<", ">", "(", ")", ";", ":", "@", "=?", "?=", "=?utf-8?q?x?=", " ",
          "  ", "'", "=", "+", "-", "Zoë", "Ægir", "中文", "🏃", "é", "\u00a0", "A" * 80,
          "\u2028", "\u2029", "\x85", "\r\n", "\n", "\r", "\t", "\v", "\x00"]

SLOW = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# -- strategies ------------------------------------------------------------------------------

unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
tricky_text = st.lists(st.one_of(st.sampled_from(TRICKY), unicode_text), max_size=8).map("".join)
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
idn_label = st.sampled_from(["bücher", "münchen", "пример", "ñandú", "例え"])
domains = st.builds(lambda labels, tld: ".".join([*labels, tld]),
                    st.lists(st.one_of(label, idn_label), min_size=1, max_size=3),
                    st.sampled_from(["com", "org", "example", "run"]))
locals_ = st.lists(st.text(ATEXT, min_size=1, max_size=12), min_size=1, max_size=4).map(".".join)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", locals_, domains).filter(
    lambda addr: validate_email(addr) is None)
# Anything an attacker may type into an email field: mostly address-shaped, specials mixed in.
address_like = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(ATEXT + SPECIALS + ".é\u2028", min_size=1, max_size=20),
    st.one_of(domains, st.text(string.ascii_lowercase + SPECIALS + "-._é", min_size=1,
                               max_size=15)))


def storable(name: str) -> str:
    """`name` made into one the store keeps as it is: no controls, trimmed, within the limit."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", "", name).strip()[:MAX_NAME].strip()


names = st.one_of(tricky_text, unicode_text).map(storable)
tags = st.lists(st.text(ATEXT + "=+-@'\"é,", min_size=1, max_size=10), max_size=3, unique=True)


def as_header(addr: str) -> str:
    """The address as a header must carry it: an international domain in IDNA (xn--)."""
    local, _, domain = addr.rpartition("@")
    return f"{local}@{domain.encode('idna').decode('ascii')}"


# -- reading CSV: one transaction, every bad row reported by line ------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One generated CSV row and what the store must hold for it (None: it must be refused)."""

    cells: tuple[str, ...]
    expected: tuple | None
    claims: bool = True  # its address counts as seen: a later row with it is a duplicate


def good_row(addr: str, name: str, goal: str, tag_list: list[str], status: str) -> Row:
    # A hand-written cell such as '=x reads as =x: the importer undoes a neutralising quote.
    joined = restore_cell(";".join(tag_list))
    return Row((addr, name, goal, ";".join(tag_list), status),
               (canonical(restore_cell(addr)), restore_cell(name).strip(), goal,
                tuple(dict.fromkeys(t for t in joined.split(";") if t)), status or "active"))


good_rows = st.builds(good_row, addresses, names, st.sampled_from(GOALS.slugs), tags,
                      st.sampled_from(["", *STATUSES]))
bad_rows = st.one_of(
    st.builds(lambda a, n: Row((a, n, "5k", "", ""), None, claims=False),
              address_like.filter(lambda a: validate_email(a) is not None), names),
    st.builds(lambda a, n: Row((a, n, "5k", "", ""), None), addresses,
              st.sampled_from(["Eve\r\nBcc: x@evil.test", "Eve\x85Bcc: x", "A\u2028B",
                               "N" * (MAX_NAME + 1), "tab\there"])),
    st.builds(lambda a: Row((a, "", "marathn", "", ""), None), addresses),
    st.builds(lambda a: Row((a, "", "5k", "", "activ"), None), addresses),
    st.builds(lambda a: Row((a, "", "5k"), None, claims=False), addresses),
)
blank_row = st.just(Row((), None, claims=False))


def write_rows(rows: list[Row], terminator: str, quoting: int) -> tuple[str, list[int]]:
    """The CSV text and the line each row starts on, counted as the importer counts lines."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=terminator, quoting=quoting)
    writer.writerow(HEADER.strip().split(","))
    starts = []
    for row in rows:
        starts.append(len(re.findall(r"\r\n|\r|\n", out.getvalue())) + 1)
        writer.writerow(row.cells)
    return out.getvalue(), starts


def stored(store: Store) -> set[tuple]:
    return {(s.email, s.first_name, s.goal, s.tags, s.status) for s in store.list()}


def audit_count(store: Store) -> int:
    return store.conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0]


def fold(row: Row) -> str:
    return mailbox_key(restore_cell(row.cells[0]))


@FAST
@given(rows=st.lists(st.one_of(good_rows, bad_rows, blank_row), max_size=12),
       terminator=st.sampled_from(["\n", "\r\n"]), bom=st.booleans(),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
@example(rows=[good_row("a@example.com", "A", "5k", [], ""),
               good_row("A@example.com", "", "5k", [], "unsubscribed")],
         terminator="\n", bom=False, quoting=csv.QUOTE_MINIMAL)
def test_an_import_lands_every_good_row_and_reports_every_bad_row_by_line(
        rows, terminator, bom, quoting):
    text, starts = write_rows(rows, terminator, quoting)
    first_seen: dict[str, int] = {}
    expected: dict[str, tuple] = {}  # folded address -> what the store must hold
    bad_lines = []
    for row, line in zip(rows, starts, strict=True):
        if not row.cells:
            continue
        duplicate = fold(row) in first_seen
        if row.expected is None or duplicate:
            bad_lines.append(line)
            # A skipped row saying the reader left still takes them off the list.
            landed = expected.get(fold(row))
            if (row.expected is not None and row.expected[4] in LEFT and landed is not None
                    and landed[4] in ("active", "pending")):
                expected[fold(row)] = (*landed[:4], row.expected[4])
        else:
            expected[fold(row)] = row.expected
        if row.claims:
            first_seen.setdefault(fold(row), line)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "readers.csv"
        path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
        with open_store(Path(folder) / "runletter.db") as store:
            report = store.import_csv(path, GOALS, display="readers.csv")
            assert [f.line for f in report.errors] == bad_lines
            assert all(str(f).startswith(f"readers.csv:{f.line}: ") for f in report.errors)
            assert (report.added, report.skipped) == (len(expected), len(bad_lines))
            assert stored(store) == set(expected.values())


@SLOW
@given(rows=st.lists(good_rows, min_size=1, max_size=6, unique_by=fold),
       at=st.integers(min_value=0, max_value=6))
def test_an_import_that_fails_midway_leaves_the_store_as_it_was(rows, at):
    # A field over the csv module's limit makes the reader fail after earlier rows were written.
    huge = Row(("huge@example.com", "x" * (csv.field_size_limit() + 1), "5k", "", ""), None)
    rows = [*rows[:at], huge, *rows[at:]]
    text, starts = write_rows(rows, "\r\n", csv.QUOTE_MINIMAL)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "readers.csv"
        path.write_text(text, encoding="utf-8", newline="")
        with open_store(Path(folder) / "runletter.db") as store:
            store.add("already@example.com", goal="5k", first_name="Al")
            for row in rows[:1]:
                if row.expected is not None:  # one row of the file updates a stored reader
                    store.add(row.cells[0], goal="half", first_name="Before")
            before = (stored(store), audit_count(store))
            with pytest.raises(RunletterError) as caught:
                store.import_csv(path, GOALS, display="readers.csv")
            assert str(caught.value).startswith(f"readers.csv:{starts[min(at, len(rows) - 1)]}:")
            assert "nothing imported" in str(caught.value)
            assert (stored(store), audit_count(store)) == before
            assert not store.conn.in_transaction


@SLOW
@given(rows=st.lists(good_rows, min_size=1, max_size=6, unique_by=fold),
       encoding=st.sampled_from(["latin-1", "cp1252", "utf-16", "utf-32"]))
def test_a_file_that_is_not_utf8_imports_nothing_and_says_so(rows, encoding):
    text, _ = write_rows(rows, "\n", csv.QUOTE_MINIMAL)
    try:
        data = text.encode(encoding)
        data.decode("utf-8")
    except UnicodeEncodeError:
        assume(False)  # that encoding cannot hold these names at all
    except UnicodeDecodeError:
        pass
    else:
        assume(False)  # plain ASCII: the same bytes in UTF-8
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "readers.csv"
        path.write_bytes(data)
        with open_store(Path(folder) / "runletter.db") as store:
            store.add("already@example.com")
            before = (stored(store), audit_count(store))
            with pytest.raises(RunletterError, match=r"^readers\.csv:\d+: not UTF-8 text"):
                store.import_csv(path, GOALS, display="readers.csv")
            assert (stored(store), audit_count(store)) == before


@FAST
@given(data=st.binary(max_size=300))
def test_no_bytes_crash_an_import_or_half_write_it(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "readers.csv"
        path.write_bytes(HEADER.encode() + data)
        with open_store(Path(folder) / "runletter.db") as store:
            store.add("already@example.com", goal="5k")
            before = (stored(store), audit_count(store))
            try:
                report = store.import_csv(path, GOALS, display="readers.csv")
            except RunletterError as refused:
                assert all(f.path == "readers.csv" for f in refused.findings)
                assert (stored(store), audit_count(store)) == before
            else:
                assert len(stored(store)) == len(before[0]) + report.added
                assert report.skipped == len(report.errors)
            assert not store.conn.in_transaction


# -- writing CSV: nothing a spreadsheet runs, nothing lost on the way back -----------------------


readers = st.lists(st.tuples(addresses, names, st.sampled_from(GOALS.slugs), tags,
                             st.sampled_from(STATUSES)),
                   min_size=1, max_size=8, unique_by=lambda r: mailbox_key(r[0]))
# Values that start with formula characters, or with quotes before one, as stored values may.
# (A stored name or tag never starts with TAB or CR: the store trims them.)
formula_names = st.builds(lambda quotes, start, rest: storable(quotes + start + rest),
                          st.sampled_from(["", "'", "''"]), st.sampled_from("=+-@"),
                          st.text(ATEXT + " ()\"'", max_size=20))
formula_readers = st.lists(st.tuples(
    st.builds(lambda start, addr: start + addr, st.sampled_from(["", "=", "+", "-", "'=", "''-"]),
              addresses).filter(lambda a: validate_email(a) is None),
    st.one_of(names, formula_names), st.sampled_from(GOALS.slugs),
    st.lists(st.one_of(formula_names, st.sampled_from(["'", "'@x", "-1"])).map(
        lambda t: t.replace(";", "")).filter(bool), max_size=3, unique=True),
    st.sampled_from(STATUSES)), min_size=1, max_size=8, unique_by=lambda r: mailbox_key(r[0]))


def fill(store: Store, people: list[tuple]) -> None:
    for addr, name, goal, tag_list, status in people:
        store.add(addr, first_name=name, goal=goal, tags=tag_list, status=status)


@FAST
@given(people=st.one_of(readers, formula_readers))
def test_no_exported_cell_starts_with_a_formula_character(people):
    with tempfile.TemporaryDirectory() as folder, \
            open_store(Path(folder) / "runletter.db") as store:
        fill(store, people)
        out = io.StringIO()
        store.export_csv(out)
    cells = [cell for row in csv.reader(io.StringIO(out.getvalue())) for cell in row]
    assert [cell for cell in cells if cell.startswith(FORMULA_STARTS)] == []


@FAST
@given(value=st.one_of(tricky_text, st.builds(
    lambda quotes, start, rest: quotes + start + rest, st.text("'", max_size=3),
    st.sampled_from(FORMULA_STARTS), tricky_text)))
def test_a_neutralised_cell_never_starts_a_formula_and_restores_to_any_value(value):
    cell = neutralise_cell(value)
    assert not cell.startswith(FORMULA_STARTS)
    assert restore_cell(cell) == value


@SLOW
@given(people=st.one_of(readers, formula_readers))
def test_export_then_import_restores_every_stored_value_exactly(people):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.csv"
        with open_store(Path(folder) / "one.db") as one:
            fill(one, people)
            with path.open("w", encoding="utf-8", newline="") as out:
                one.export_csv(out)
            original = stored(one)
        with open_store(Path(folder) / "two.db") as two:
            report = two.import_csv(path, GOALS, display="export.csv")
            assert report.findings == ()
            assert stored(two) == original


# -- headers: every To: parses back, nothing injects a header -----------------------------------


def message_for(setup, name: str, addr: str, subject: str | None = None) -> bytes:
    _, editions, addresser = setup
    edition = editions["marathon"]
    if subject is not None:
        edition = dataclasses.replace(edition, subject=subject)
    recipient = addresser.recipient(SLUG, 7, addr, name)
    return addresser.message(addresser.compile(edition), recipient).data


@FAST
@given(name=names, addr=addresses)
def test_every_to_header_parses_back_to_exactly_the_stored_address(setup, name, addr):
    data = message_for(setup, name, addr)
    assert address_in(data) == (name, as_header(addr))
    head = data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998


@FAST
@given(text=address_like, name=names)
def test_an_address_the_store_accepts_never_breaks_a_to_header(setup, text, name):
    assume(validate_email(text) is None)
    addr = text.strip()
    assert address_in(message_for(setup, name, addr)) == (name, as_header(addr))


def header_names(data: bytes) -> list[str]:
    return sorted(email.message_from_bytes(data, policy=email.policy.SMTP).keys())


@FAST
@given(text=st.one_of(tricky_text, unicode_text, st.sampled_from(list(LINE_BREAKS)).map(
    lambda brk: f"Hi{brk}Bcc: victim@example.com")))
def test_no_name_or_subject_ever_adds_a_header(setup, text):
    expected = header_names(message_for(setup, "Ana", "ana@example.com"))
    breaks = any(brk in text for brk in LINE_BREAKS)
    for name, subject in ((text, None), ("Ana", text)):
        try:
            data = message_for(setup, name, "ana@example.com", subject)
        except HeaderInjection:
            assert breaks
            continue
        assert not breaks
        head = data.split(b"\r\n\r\n", 1)[0]
        assert re.search(rb"\r(?!\n)|(?<!\r)\n", head) is None
        parsed = email.message_from_bytes(data, policy=email.policy.SMTP)
        # A relay or filter that re-folds with the stdlib must not find a header in it either.
        again = parsed.as_bytes(policy=email.policy.SMTP)
        assert header_names(data) == header_names(again) == expected
        assert parsed["To"].addresses[0].addr_spec == "ana@example.com"
