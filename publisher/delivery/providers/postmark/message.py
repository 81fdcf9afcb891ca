"""A Postmark batch's messages as bytes: each edition encoded once as JSON with holes, and
each reader's message joined from it without rendering or re-encoding anything."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring  # C-accelerated, ensure_ascii=False
from typing import Any

from publisher.config import Config
from publisher.delivery.address import format_address, header_safe
from publisher.model import Edition, Slot


def _json_str(value: str) -> bytes:
    """A JSON string literal (quotes included), UTF-8."""
    return encode_basestring(value).encode("utf-8")


def _json_inner(value: str) -> bytes:
    """A string JSON-escaped without its quotes, to sit inside a literal."""
    return encode_basestring(value)[1:-1].encode("utf-8")


# The holes of a message other than slots.
TO, UNSUBSCRIBE, MESSAGE_ID, SUBSCRIBER_ID = range(4)
BIG = 4096  # fixed runs this long are sent as they are: shared, never copied per message


@dataclass(frozen=True)
class MessageJson:
    """One edition as Postmark message bytes with holes for each reader's values.

    `segments` is the message object in order: fixed bytes (From, Subject, the JSON-escaped
    literal runs of the HTML and text, the fixed headers), slots as (Slot, html-escaped?),
    and the other holes (TO, UNSUBSCRIBE, MESSAGE_ID, SUBSCRIBER_ID).
    """

    edition: Edition
    segments: tuple[bytes | int | tuple[Slot, bool], ...]

    def message(self, values: Mapping[str, str], to: str, subscriber_id: int,
                unsubscribe: str) -> tuple[list[bytes], int]:
        """One reader's message object as chunks, and its size; nothing rendered.

        Long fixed runs (the bulk of the HTML) are this object's own bytes, shared
        by every message of the batch; only the short runs around the reader's values are
        joined into new bytes.
        """
        chunks: list[bytes] = []
        small: list[bytes] = []
        size = 0
        for segment in self.segments:
            kind = segment.__class__
            if kind is bytes:
                if len(segment) >= BIG:  # type: ignore[arg-type]
                    if small:
                        joined = b"".join(small)
                        chunks.append(joined)
                        size += len(joined)
                        small = []
                    chunks.append(segment)  # type: ignore[arg-type]
                    size += len(segment)  # type: ignore[arg-type]
                else:
                    small.append(segment)  # type: ignore[arg-type]
            elif kind is tuple:
                slot, escaped = segment  # type: ignore[misc]
                value = values.get(slot.name) or slot.default
                small.append(_json_inner(html.escape(value, quote=True) if escaped else value))
            elif segment == TO:
                small.append(_json_str(to))
            elif segment == UNSUBSCRIBE:
                small.append(_json_str(unsubscribe))
            elif segment == MESSAGE_ID:
                small.append(_json_str(header_safe(values["message_id"], "Message-ID")))
            else:
                small.append(_json_str(str(subscriber_id)))
        if small:
            joined = b"".join(small)
            chunks.append(joined)
            size += len(joined)
        return chunks, size


def encode_edition(edition: Edition, config: Config, settings: Any) -> MessageJson:
    """The edition as Postmark message bytes, encoded once (`settings`: Postmark's)."""
    fixed: dict[str, object] = {
        "From": format_address(config.sender_name, config.sender_email),
        "ReplyTo": header_safe(config.reply_to, "the Reply-To address"),
        "Subject": header_safe(edition.subject, "the subject"),
        "MessageStream": str(settings.message_stream).strip(),
        "TrackOpens": bool(settings.track_opens),
    }
    if str(settings.tag).strip():
        fixed["Tag"] = str(settings.tag).strip()
    head = json.dumps(fixed, ensure_ascii=False, separators=(",", ":"))[:-1]
    edition_header = header_safe(f"{edition.post_slug}/{edition.goal}", "the edition")
    headers_head = (
        ',"Headers":[{"Name":"X-Runletter-Edition","Value":' + encode_basestring(
            edition_header) + '},{"Name":"List-Unsubscribe-Post",'
        '"Value":"List-Unsubscribe=One-Click"},{"Name":"List-Unsubscribe","Value":')
    metadata = json.dumps({"post": edition.post_slug, "goal": edition.goal},
                          ensure_ascii=False, separators=(",", ":"))[:-1]
    segments: list[bytes | int | tuple[Slot, bool]] = []

    def add(*items: bytes | str | int | tuple[Slot, bool]) -> None:
        for item in items:
            if isinstance(item, str):
                item = item.encode("utf-8")
            if isinstance(item, bytes) and segments and isinstance(segments[-1], bytes):
                segments[-1] += item  # adjacent fixed runs become one
            elif item != b"":
                segments.append(item)

    add(head + ',"To":', TO, ',"HtmlBody":"')
    add(*(_json_inner(p) if isinstance(p, str) else (p, True) for p in edition.html_parts))
    add('","TextBody":"')
    add(*(_json_inner(p) if isinstance(p, str) else (p, False) for p in edition.text_parts))
    add('"', headers_head, UNSUBSCRIBE, '},{"Name":"X-Runletter-Message-ID","Value":',
        MESSAGE_ID, '}],"Metadata":', metadata, ',"subscriber_id":', SUBSCRIBER_ID, "}}")
    return MessageJson(edition=edition, segments=tuple(segments))
