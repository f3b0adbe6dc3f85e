"""What other newsletter tools put in their subscriber exports: the header names each
uses for the address, the names, the status and the dates; the words each uses for a
status; the columns that are only that tool's bookkeeping. csvfiles reads with it.

Sources: the export files of Mailchimp (subscribed, unsubscribed and cleaned members,
one file each), Substack (email_list.*.csv), Buttondown, listmonk, Ghost (members),
Kit (ConvertKit) and Beehiiv. Headers are compared normalized: 'Email Address',
'email_address' and 'EMAIL ADDRESS' are one name.
"""

from __future__ import annotations

import datetime as dt
import re

from newsletter.storage.models import Status

# Each field we read, and the (normalized) headers that carry it; the first is ours.
ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "email_address", "e_mail", "e_mail_address", "emailaddress",
              "user_email_address", "subscriber_email", "mail"),
    "name": ("name", "full_name", "fullname", "display_name", "user_name", "subscriber_name"),
    "first_name": ("first_name", "firstname", "fname", "given_name", "first"),
    "last_name": ("last_name", "lastname", "lname", "surname", "family_name", "last"),
    "status": ("status", "state", "subscriber_type", "subscription_status"),
    "signed_up": ("created_at", "optin_time", "creation_date", "created", "created_date",
                  "signup_date", "signed_up_at", "subscribed_at", "date_subscribed",
                  "subscription_created_at", "date_added", "joined_at"),
    "confirmed": ("confirmed_at", "confirm_time", "confirmation_date"),
    "consented": ("consent_at",),
    "left": ("unsubscribed_at", "unsub_time", "unsubscribe_date"),
    "cleaned": ("clean_time", "bounced_at"),  # Mailchimp's cleaned file: hard bounces
    "consent_source": ("consent_source",),
    "attributes": ("attributes", "attribs", "metadata"),  # a JSON object (listmonk, Buttondown)
    "subscribed": ("subscribed_to_emails", "subscribed"),  # Ghost: false means left
    "disabled": ("email_disabled",),  # Substack: true means left
}  # fmt: skip
FIELD_OF = {alias: field for field, aliases in ALIASES.items() for alias in aliases}


def _words(text: str) -> list[str]:
    return text.split()


# The other tool's bookkeeping: ids, scores, geo guesses, billing. Listed as ignored.
BOOKKEEPING = frozenset(
    _words(
        "id uuid leid euid member_rating optin_ip confirm_ip latitude longitude gmtoff dstoff "
        "timezone cc region last_changed updated_at updated_date deleted_at stripe_customer_id "
        "complimentary_plan secondary_id expiry active_subscription first_payment_at "
        "unsub_campaign_title unsub_campaign_id unsub_reason unsub_reason_other "
        "clean_campaign_title clean_campaign_id"
    )
)

# Headers that together only one tool writes; the first entry that fits names the tool.
SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (tool, frozenset(marks.split()))
    for tool, marks in (
        ("newsletter", "consent_source"),
        ("Mailchimp", "leid"), ("Mailchimp", "member_rating"), ("Mailchimp", "optin_time"),
        ("Substack", "email_disabled"), ("Substack", "active_subscription"),
        ("Buttondown", "subscriber_type"), ("Buttondown", "creation_date"),
        ("listmonk", "uuid attributes"), ("listmonk", "attribs"),
        ("Ghost", "subscribed_to_emails"), ("Ghost", "complimentary_plan"),
        ("Beehiiv", "subscription_tier"), ("Beehiiv", "referring_site"),
        ("Kit", "email_address state"),
        # Mailchimp's own column names, in a file cut down to them
        ("Mailchimp", "email_address first_name last_name"),
    )
)  # fmt: skip

# Status words, across tools. Whatever means "do not mail" is never active.
STATUS_WORDS: dict[str, Status] = {
    **dict.fromkeys(
        # Buttondown's paid states (premium, trialed, churning, paused, past_due...) are
        # all still subscribed to the newsletter itself.
        _words(
            "active subscribed enabled confirmed regular premium trialed unpaid gifted churning "
            "paused past_due free paid comped"
        ),
        Status.active,
    ),
    **dict.fromkeys(_words("pending unconfirmed unactivated validating"), Status.pending),
    **dict.fromkeys(
        _words(
            "unsubscribed cancelled canceled blocklisted blacklisted disabled removed spammy "
            "complained inactive opted_out"
        ),
        Status.unsubscribed,
    ),
    **dict.fromkeys(
        _words("bounced cleaned undeliverable invalid hard_bounce needs_attention"),
        Status.bounced,
    ),
}
# Where one word means something else in one tool: Kit's "inactive" is unconfirmed.
TOOL_STATUS_WORDS: dict[str, dict[str, Status]] = {"Kit": {"inactive": Status.pending}}

TRUE = frozenset({"true", "yes", "1", "y", "t"})
FALSE = frozenset({"false", "no", "0", "n", "f"})


def normalize_header(raw: str) -> str:
    """'Email Address' → 'email_address'; '﻿E-mail ' → 'e_mail'."""
    return re.sub(r"[^0-9a-z]+", "_", raw.strip().lower()).strip("_")


def detect_tool(headers: set[str]) -> str:
    """The tool whose export this header row looks like ('' when none)."""
    for tool, marks in SIGNATURES:
        if marks <= headers:
            return tool
    return ""


def status_word(raw: str, tool: str) -> Status | None:
    """The status a word means (None: not a word we know)."""
    word = normalize_header(raw)
    return TOOL_STATUS_WORDS.get(tool, {}).get(word) or STATUS_WORDS.get(word)


def flag(raw: str) -> bool | None:
    """A yes/no cell: True, False, or None when it is neither (or empty)."""
    word = raw.strip().lower()
    return True if word in TRUE else False if word in FALSE else None


def parse_date(raw: str) -> dt.datetime:
    """A date or time as the tools write them, in UTC; ValueError if it is none.
    ISO 8601 ('2024-05-01T09:30:00.000Z', '2024-05-01 09:30:00', '2024-05-01'),
    with ' UTC' after it (Beehiiv), or Unix seconds."""
    value = raw.strip()
    if value.isdigit() and 9 <= len(value) <= 10:
        return dt.datetime.fromtimestamp(int(value), dt.UTC)
    for suffix in (" UTC", " GMT"):
        value = value.removesuffix(suffix)
    parsed = dt.datetime.fromisoformat(value)  # ValueError says nothing a reader can use
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)  # the tools export in UTC
    return parsed.astimezone(dt.UTC)
