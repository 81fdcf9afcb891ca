"""Email addresses: which ones Runletter accepts, and the one form it stores them in.

Used by the settings ([sender] email), the store, the importer, `runletter serve`'s signup
form and the webhooks; it depends on nothing in Runletter but its errors, so any of them can
import it.
"""

from __future__ import annotations

import re
import string
import unicodedata

import idna

from publisher.errors import RunletterError

MAX_EMAIL = 254  # RFC 5321 path limit
MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1
MAX_LABEL = 63  # RFC 1035 2.3.4

CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1 (NEL), LS, PS
_SPACE_RE = re.compile(r"\s")
# atext of RFC 5322 3.2.3 plus the dot: the unquoted local parts providers accept.
_NOT_ATEXT_RE = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")
_NOT_HOSTNAME_RE = re.compile(r"[^A-Za-z0-9.-]")
# SQLite's NOCASE folds ASCII only; fold the same way so "seen in this file" agrees with UNIQUE.
_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def validate_email(text: str) -> str | None:
    """Why `text` is not a usable email address, or None when it is."""
    if "\r" in text or "\n" in text:
        return "it contains a line break"
    email = text.strip()
    if not email:
        return "it is empty"
    if len(email) > MAX_EMAIL:
        return f"it is {len(email)} characters long; the limit is {MAX_EMAIL}"
    if CONTROL_RE.search(email):
        return "it contains a control character"
    if _SPACE_RE.search(email):
        return "it contains a space"
    at = email.count("@")
    if at == 0:
        return "it has no '@'"
    if at > 1:
        return "it has more than one '@'"
    local, domain = email.split("@")
    return _local_problem(local) or _domain_problem(domain)


def _local_problem(local: str) -> str | None:
    """Why the part before the '@' is not a dot-atom (RFC 5322 3.4.1), or None."""
    if not local:
        return "nothing before the '@'"
    if not local.isascii():
        # Non-ASCII mailbox names need SMTPUTF8 end to end, which few providers offer.
        return "the part before the '@' has non-ASCII letters, which most providers refuse"
    # Quoted local parts are valid RFC 5322 but no provider takes them, and their specials
    # (quotes, commas, angle brackets, backslashes) are what breaks a To: header.
    bad = _NOT_ATEXT_RE.search(local)
    if bad:
        return f"the part before the '@' contains {bad.group()!r}, which mail providers refuse"
    if local.startswith(".") or local.endswith("."):
        return "the part before the '@' starts or ends with a dot"
    if ".." in local:
        return "the part before the '@' has two dots in a row"
    if len(local) > MAX_LOCAL:
        return f"the part before the '@' is {len(local)} characters long; the limit is {MAX_LOCAL}"
    return None


def _domain_problem(domain: str) -> str | None:
    """Why the part after the '@' is not a host name (letters, digits, hyphens), or None."""
    if not domain:
        return "nothing after the '@'"
    if "." not in domain:
        return f"the domain '{domain}' has no dot"
    if any(not label for label in domain.split(".")):
        return f"the domain '{domain}' has an empty part"
    try:
        ascii_domain = canonical_domain(domain)
    except UnicodeError:
        return f"the domain '{domain}' is not a valid international domain name"
    # Checked in the form headers carry (xn--…), so an IDN cannot smuggle in what ASCII can't.
    bad = _NOT_HOSTNAME_RE.search(ascii_domain)
    if bad:
        return f"the domain '{domain}' contains {bad.group()!r}"
    labels = ascii_domain.split(".")
    if any(label.startswith("-") or label.endswith("-") for label in labels):
        return f"the domain '{domain}' has a part that starts or ends with a hyphen"
    if any(len(label) > MAX_LABEL for label in labels):
        return f"the domain '{domain}' has a part longer than {MAX_LABEL} characters"
    return None


def canonical_domain(domain: str) -> str:
    """The one ASCII form of a domain: UTS-46 mapped (case, NFC, full-width dots) and each
    international label as its A-label (xn--…); a UnicodeError when it is not a valid IDN.

    Punycode rather than Unicode is stored because that is what every provider reports in
    its webhooks and what an SMTP server without SMTPUTF8 accepts. Nontransitional (IDNA
    2008) mapping keeps 'ß' and 'ς' as registries do, so two real domains never merge.
    """
    if domain.isascii() and "xn--" not in domain.lower():
        return domain.lower()  # plain host names keep the checks and messages of before
    mapped = idna.uts46_remap(domain, std3_rules=False, transitional=False)
    return ".".join(label if label.isascii() and not label.startswith("xn--")
                    else idna.alabel(label).decode("ascii") for label in mapped.split("."))


def canonical(text: str) -> str:
    """The stored form of an address, one per mailbox: trimmed, the local part in NFC with
    its case as given (mail goes to the spelling the reader used), the domain by
    `canonical_domain`. Matching ignores the local part's case too (see `mailbox_key`).
    An address whose domain is no valid IDN keeps its domain lowercased (it only fails to
    match), so a lookup never raises."""
    local, _, domain = text.strip().rpartition("@")
    if not local:
        return text.strip()
    try:
        domain = canonical_domain(domain)
    except UnicodeError:
        domain = domain.lower()
    return f"{unicodedata.normalize('NFC', local)}@{domain}"


def mailbox_key(text: str) -> str:
    """What two spellings of one mailbox share: `canonical` with the local part case-folded
    (RFC 5321 lets a server tell 'Hans' from 'hans'; no mainstream provider does, and a
    reader who once types capitals must not become a second reader)."""
    return canonical(text).casefold()


def unicode_form(text: str) -> str:
    """The address with its domain's A-labels shown as Unicode (as a person writes it); the
    address as it is when the domain does not decode."""
    local, _, domain = text.strip().rpartition("@")
    try:
        return f"{local}@{idna.decode(domain)}" if local and "xn--" in domain.lower() else text
    except UnicodeError:
        return text


def normalize_email(text: str) -> str:
    """The stored form of an address (`canonical`), as every route looks readers up."""
    return canonical(text)


def check_email(text: str) -> str:
    """The normalized address, or a one-line RunletterError saying why it is invalid."""
    reason = validate_email(text)
    if reason:
        raise RunletterError(f"invalid email {show_value(text)}: {reason}")
    return normalize_email(text)


def fold_email(email: str) -> str:
    """The address as SQLite's NOCASE compares it."""
    return email.lower() if email.isascii() else email.translate(_ASCII_FOLD)


def show_value(value: str, limit: int = 60) -> str:
    """A value quoted for a one-line message, with line breaks visible and long text cut."""
    return repr(value if len(value) <= limit else value[:limit] + "…")
