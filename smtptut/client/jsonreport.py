"""--json: one JSON object per recipient, for operators' tools."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from smtptut.client.model import NO_REPLY, RecipientOutcome

#: An RFC 3463 enhanced status code at the start of a reply's text.
_ENHANCED = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?:\s|$)")


def enhancedCode(reply: str) -> str | None:
    """
    The enhanced status code (C{5.1.1}) a reply's text begins with, if any.
    """
    match = _ENHANCED.match(reply)
    return match.group(1) if match else None


def outcomeJSON(
    outcome: RecipientOutcome,
    dkimSelectors: Sequence[str] = (),
    queueId: str | None = None,
    attempts: int | None = None,
) -> str:
    """
    One line of C{--json}: what happened to C{outcome}'s recipient.

    @param dkimSelectors: the selectors the message was signed with.
    @param queueId: the queue entry, when the message was queued.
    @param attempts: the queue's count for the recipient, when queued (the
        outcome's own count is this run's connections).
    """
    record = {
        "recipient": outcome.recipient,
        "status": outcome.status.value,
        "code": None if outcome.code == NO_REPLY else outcome.code,
        "enhanced": enhancedCode(outcome.reply),
        "reply": outcome.reply,
        "notes": list(outcome.notes),
        "mx": outcome.exchange,
        "address": outcome.address,
        "tls": outcome.tlsVersion,
        "tls_verified": outcome.tlsVerified,
        "dkim": list(dkimSelectors),
        "queue_id": queueId,
        "attempts": outcome.attempts if attempts is None else attempts,
    }
    return json.dumps(record, ensure_ascii=False, sort_keys=False)
