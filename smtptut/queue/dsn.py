"""RFC 3464 delivery status notifications: the failure report a sender gets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from typing import IO

from smtptut.queue.store import Entry, Recipient

#: The most of the original message's header section a DSN returns.
MAX_HEADERS = 64 * 1024

_ENHANCED = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9.])")

#: RFC 3463 X.4.7: delivery time expired.
EXPIRED_STATUS = "4.4.7"

#: RFC 3463 X.0.0: a permanent failure with nothing more precise to say.
PERMANENT_STATUS = "5.0.0"


def wantsNotice(sender: str) -> bool:
    """
    Whether a sender is sent DSNs: never the null sender C{<>}, which is
    what a DSN itself is sent from (RFC 5321 §4.5.5), so that no bounce
    ever answers a bounce.
    """
    return bool(sender)


def statusCode(recipient: Recipient) -> str:
    """
    The RFC 3463 status of a failed recipient: the enhanced code of its
    last reply, else L{EXPIRED_STATUS} or L{PERMANENT_STATUS}.
    """
    match = _ENHANCED.match(recipient.lastReply)
    if match is not None:
        if recipient.expired or match.group(1) == "5":
            return match.group(0)
    return EXPIRED_STATUS if recipient.expired else PERMANENT_STATUS


def diagnosticCode(recipient: Recipient) -> str | None:
    """
    The C{Diagnostic-Code} field's value: the SMTP reply, else the cause
    (a refused connection, a DNS error) as smtptut said it.
    """
    if recipient.lastCode:
        return f"smtp; {recipient.lastCode} {recipient.lastReply}".strip()
    if recipient.lastReply:
        return f"X-Smtptut; {recipient.lastReply}"
    return None


def originalHeaders(message: IO[bytes]) -> str:
    """
    The header section of the original message (at most L{MAX_HEADERS}
    octets), LF line ends.
    """
    lines = []
    size = 0
    for line in message:
        if not line.strip(b"\r\n") or size > MAX_HEADERS:
            break
        size += len(line)
        lines.append(line.rstrip(b"\r\n").decode("utf-8", "replace"))
    return "".join(line + "\n" for line in lines)


def _explanation(entry: Entry, failed: Sequence[Recipient], reporter: str) -> str:
    lines = [
        f"This is the mail system at {reporter}.",
        "",
        "Your message could not be delivered to the recipients below.",
        "",
    ]
    for r in failed:
        if r.expired:
            why = f"gave up after {r.attempts} attempts"
        else:
            why = "refused"
        last = f"{r.lastCode} {r.lastReply}" if r.lastCode else r.lastReply
        via = f" (from {r.exchange})" if r.exchange else ""
        lines.append(f"<{r.address}>: {why}{via}: {last}")
    lines += ["", "The delivery status report and the message's header follow."]
    return "\n".join(lines) + "\n"


def _text(text: str, subtype: str) -> MIMEText:
    # Plain 7bit when it can be, so that the report reads as it is.
    return MIMEText(text, subtype, "us-ascii" if text.isascii() else "utf-8")


def _block(fields: Sequence[tuple[str, str | None]]) -> Message:
    block = Message()
    for name, value in fields:
        if value is not None:
            block[name] = value
    return block


def makeNotice(
    entry: Entry,
    failed: Sequence[Recipient],
    headers: str,
    reporter: str,
    now: float,
) -> bytes:
    """
    The RFC 3464 DSN for C{failed} recipients of C{entry}, in SMTP form: a
    C{multipart/report; report-type=delivery-status} of an explanation, a
    C{message/delivery-status} part (one block per recipient) and the
    original C{headers} as C{text/rfc822-headers}.

    @param reporter: the C{Reporting-MTA} name.
    """
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporter}>"
    report["To"] = entry.sender
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = formatdate(now)
    report["Message-ID"] = make_msgid(domain=reporter)
    # RFC 3834: an automatic message, so that no autoresponder answers it.
    report["Auto-Submitted"] = "auto-replied"
    report.preamble = "This is a MIME-encapsulated delivery status notification."
    report.attach(_text(_explanation(entry, failed, reporter), "plain"))

    blocks = [
        _block(
            [
                ("Reporting-MTA", f"dns; {reporter}"),
                ("X-Smtptut-Queue-ID", entry.id),
                ("Arrival-Date", formatdate(entry.created)),
            ]
        )
    ]
    for r in failed:
        blocks.append(
            _block(
                [
                    ("Final-Recipient", f"rfc822; {r.address}"),
                    ("Action", "failed"),
                    ("Status", statusCode(r)),
                    ("Remote-MTA", f"dns; {r.exchange}" if r.exchange else None),
                    ("Diagnostic-Code", diagnosticCode(r)),
                    (
                        "Last-Attempt-Date",
                        formatdate(r.lastAttempt) if r.lastAttempt else None,
                    ),
                ]
            )
        )
    status = Message()
    status["Content-Type"] = "message/delivery-status"
    status.set_payload(blocks)  # type: ignore[arg-type]
    report.attach(status)

    report.attach(_text(headers, "rfc822-headers"))
    return report.as_bytes(policy=SMTP)
