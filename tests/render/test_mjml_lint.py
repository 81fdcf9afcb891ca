"""MJML warnings that MRML does not give: unknown elements, wrong nesting, bad attributes."""

from pathlib import Path

from publisher.render.mjml_lint import findings, lint

GOOD = """<mjml><mj-head><mj-attributes><mj-all font-family="Arial" /><mj-text color="#111" />
</mj-attributes><mj-preview>Hi</mj-preview></mj-head>
<mj-body><mj-section><mj-column>
<mj-text css-class="x" align="left"><p>Hi <b>there</b> <mj-notparsed></p></mj-text>
<mj-image src="a.png" alt="A" /><mj-button href="https://example.org">Go</mj-button>
</mj-column></mj-section></mj-body></mjml>"""


def messages(source: str) -> list[str]:
    return [f"{p.line}: {p.message}" for p in lint(source)]


def test_valid_mjml_has_no_problems_even_with_html_inside_ending_tags():
    assert messages(GOOD) == []


def test_an_unknown_element_is_named_with_a_suggestion():
    source = GOOD.replace("<mj-button href", "<mj-buton href").replace(
        "</mj-button>", "</mj-buton>")
    assert messages(source) == ["5: unknown MJML element <mj-buton> (did you mean "
                                "'mj-button'?)"]


def test_an_element_in_the_wrong_parent_says_where_it_belongs():
    source = "<mjml><mj-body><mj-section><mj-text>Hi</mj-text></mj-section></mj-body></mjml>"
    assert messages(source) == ["1: <mj-text> cannot be inside <mj-section>; put it in an "
                                "<mj-column>"]


def test_an_unknown_attribute_is_named_with_a_suggestion():
    source = GOOD.replace('<mj-text css-class="x" align="left">',
                          '<mj-text colour="red" align="left">')
    assert messages(source) == ["4: attribute 'colour' is not valid on <mj-text> "
                                "(did you mean 'color'?)"]


def test_a_finding_points_at_the_layout_file_and_line_that_wrote_it(tmp_path: Path):
    email = tmp_path / "layouts" / "email"
    (email / "partials").mkdir(parents=True)
    (email / "partials" / "card.mjml.j2").write_text(
        "<mj-section>\n  <mj-column>\n    <mj-text colour=\"red\">{{ x }}</mj-text>\n")
    source = GOOD.replace('<mj-text css-class="x" align="left">', '<mj-text colour="red">')
    [finding] = findings(source, [email], tmp_path)
    assert (finding.path, finding.line, finding.level) == (
        "layouts/email/partials/card.mjml.j2", 3, "warning")
    assert finding.message.startswith("MJML: attribute 'colour'")
