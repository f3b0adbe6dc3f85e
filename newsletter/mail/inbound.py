"""Mail that comes back, read: a delivery status notification (a bounce, in RFC 3464
or one of the many older formats flufl.bounce knows), an ARF feedback report (a spam
complaint, RFC 5965), a mailed unsubscribe, an auto-reply, or anything else.

This module only reads: what the message is, which addresses failed and how, and
every clue that could say which delivery it is about (VERP tokens, the original
Message-ID, the reported List-Unsubscribe). Which clue is trusted, and what
follows, is newsletter.service.bounces' business.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr

from flufl.bounce import all_failures

# Where the address a message was delivered to shows: the top-level headers our own MTA
# (Delivered-To, X-Original-To, Envelope-To) or the sender (To, Cc) wrote.
RECIPIENT_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to", "cc")
STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|vacation|"
    r"away from|abwesenheit|absence|auto:)",
    re.IGNORECASE,
)
EXIM_COPY = re.compile(r"^-+ This is a copy of the message", re.IGNORECASE | re.MULTILINE)
LINK_TOKEN = re.compile(r"[?&]token=([A-Za-z0-9_.\-]+)")


@dataclass(frozen=True)
class Failure:
    address: str
    permanent: bool
    status: str | None  # the enhanced status code, "5.1.1", when the report has one


@dataclass
class Inbound:
    """What one message is. `kind`: bounce, complaint, feedback (an ARF report that is
    not a complaint), unsubscribe, auto-reply, message, junk or empty."""

    kind: str
    failures: list[Failure] = field(default_factory=list)
    bounce_tokens: list[str] = field(default_factory=list)
    mailto_tokens: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    link_tokens: list[str] = field(default_factory=list)  # from a reported List-Unsubscribe
    feedback_type: str = ""
    reporter: str = ""
    sender: str = ""

    @property
    def permanent(self) -> bool:
        return any(f.permanent for f in self.failures)

    @property
    def status(self) -> str | None:
        """The status of the worst failure."""
        worst = sorted(self.failures, key=lambda f: (not f.permanent, f.status is None))
        return worst[0].status if worst else None


def read(data: bytes, bounce_address: str | None) -> Inbound:
    """Classify one message; never raises on malformed input."""
    if not data.strip():
        return Inbound("empty")
    msg = email.message_from_bytes(data, policy=policy.compat32)
    if not _looks_like_mail(msg):
        return Inbound("junk")
    local, domain = _split(bounce_address)
    found = Inbound("message", sender=parseaddr(msg.get("from", ""))[1])
    original = _original_headers(msg)
    found.message_ids = _message_ids(msg, original)
    tokens = _tokens(_recipients(msg), local, domain)
    found.mailto_tokens = [t.removeprefix("unsubscribe-") for t in tokens if _is_mailto(t)]
    found.bounce_tokens = [t for t in tokens if not _is_mailto(t)]
    report = _feedback_report(msg)
    if report is not None:
        return _complaint(found, report, original, local, domain)
    if found.mailto_tokens:
        found.kind = "unsubscribe"
        return found
    if original is not None:  # the returned message's envelope sender was our VERP address
        found.bounce_tokens += _tokens(original.get_all("return-path", []), local, domain)
    found.failures = _failures(msg)
    if found.failures:
        found.kind = "bounce"
        found.reporter = _reporter(msg)
    elif _auto_reply(msg):
        found.kind = "auto-reply"
    return found


def _looks_like_mail(msg: Message) -> bool:
    known = {"from", "to", "subject", "date", "message-id", "received", "return-path"}
    return any(key.lower() in known for key in msg)


def _split(address: str | None) -> tuple[str, str]:
    if not address:
        return "", ""
    local, domain = address.lower().rsplit("@", 1)
    return local, domain


def _is_mailto(token: str) -> bool:
    return token.startswith("unsubscribe-")


def _recipients(msg: Message) -> list[str]:
    values: list[str] = []
    for name in RECIPIENT_HEADERS:
        values += [str(v) for v in msg.get_all(name, [])]
    return values


def _tokens(values: list[str], local: str, domain: str) -> list[str]:
    """The `local+TOKEN@domain` tokens among these header values, in order, once each."""
    if not local:
        return []
    found: list[str] = []
    for _, address in getaddresses([str(v) for v in values]):
        head, _, host = address.lower().rpartition("@")
        if host == domain and head.startswith(local + "+"):
            token = head[len(local) + 1 :]
            if token and token not in found:
                found.append(token)
    return found


def _original_headers(msg: Message) -> Message | None:
    """The headers of the message that bounced or was reported, when they came back."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822" and part.is_multipart():
            inner = part.get_payload(0)
            if isinstance(inner, Message):
                return inner
        if kind == "text/rfc822-headers":
            return HeaderParser().parsestr(_text(part), headersonly=True)
    body = _text(msg) if not msg.is_multipart() else ""
    copy = EXIM_COPY.search(body)
    if copy:  # Exim's plain bounce quotes the message after a marker line
        rest = body[copy.end() :].split("\n", 1)[-1].lstrip("\n")
        return HeaderParser().parsestr(rest, headersonly=True)
    return None


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return str(part.get_payload())


def _message_ids(msg: Message, original: Message | None) -> list[str]:
    ids = [original.get("message-id", "")] if original is not None else []
    # Exchange and others name the bounced message in the report's own threading headers.
    ids += [msg.get("x-original-message-id", ""), msg.get("in-reply-to", "")]
    return [i.strip() for i in ids if i and i.strip().startswith("<")]


def _feedback_report(msg: Message) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            inner = part.get_payload(0) if part.is_multipart() else None
            if isinstance(inner, Message):
                return inner
            return HeaderParser().parsestr(_text(part), headersonly=True)
    return None


def _complaint(
    found: Inbound, report: Message, original: Message | None, local: str, domain: str
) -> Inbound:
    found.feedback_type = str(report.get("feedback-type", "")).strip().lower()
    found.kind = "complaint" if found.feedback_type in ("abuse", "fraud") else "feedback"
    found.reporter = str(report.get("user-agent", "")).strip() or found.sender
    # The envelope sender of the reported message carries our VERP token.
    found.bounce_tokens += _tokens(report.get_all("original-mail-from", []), local, domain)
    if original is not None:
        found.bounce_tokens += _tokens(original.get_all("return-path", []), local, domain)
        for value in original.get_all("list-unsubscribe", []):
            for target in re.findall(r"<([^>]+)>", str(value)):
                if target.lower().startswith("mailto:"):
                    address = target[7:].split("?", 1)[0]
                    tokens = _tokens([address], local, domain)
                    found.mailto_tokens += [t.removeprefix("unsubscribe-") for t in tokens]
                found.link_tokens += LINK_TOKEN.findall(target)
    return found


def _failures(msg: Message) -> list[Failure]:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector choking on a malformed message: not a bounce we can read
        return []
    statuses = _dsn_statuses(msg)
    fallback = _body_status(msg)
    failures = []
    for raw, is_permanent in [(a, True) for a in sorted(permanent)] + [
        (a, False) for a in sorted(temporary)
    ]:
        address = raw.decode("ascii", "replace").strip().lower()
        status = statuses.get(address) or fallback
        hard = is_permanent and not (status or "").startswith("4")
        failures.append(Failure(address, hard, status))
    return failures


def _dsn_statuses(msg: Message) -> dict[str, str]:
    """Final-Recipient → Status of each per-recipient block of an RFC 3464 report."""
    statuses = {}
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        for block in part.get_payload():
            recipient = str(block.get("final-recipient") or block.get("original-recipient") or "")
            status = STATUS.search(str(block.get("status", "")))
            if recipient and status:
                address = recipient.split(";", 1)[-1].strip().strip("<>").lower()
                statuses[address] = status[1]
    return statuses


def _body_status(msg: Message) -> str | None:
    """The first enhanced status code in the human-readable text, before any quoted copy."""
    for part in msg.walk():
        if part.get_content_maintype() == "text" and part.get_content_subtype() == "plain":
            text = EXIM_COPY.split(_text(part), 1)[0]
            match = STATUS.search(text)
            if match:
                return match[1]
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            break
    return None


def _reporter(msg: Message) -> str:
    return parseaddr(msg.get("from", ""))[1] or "unknown"


def _auto_reply(msg: Message) -> bool:
    auto = str(msg.get("auto-submitted", "no")).strip().lower()
    precedence = str(msg.get("precedence", "")).strip().lower()
    return (
        auto != "no"
        or any(h in msg for h in ("x-autoreply", "x-autorespond", "x-autoresponse"))
        or precedence in ("auto_reply", "junk")
        or bool(AUTO_SUBJECT.match(str(msg.get("subject", ""))))
    )
