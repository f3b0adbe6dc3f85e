"""The small rules under imports and greetings: names, delimiters, dates, status words."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.fields import greeting_name, split_name
from newsletter.service import csvformats
from newsletter.service.csvfiles import sniff_delimiter
from newsletter.storage.models import Status


@pytest.mark.parametrize(
    ("full", "first", "last", "greeting"),
    [
        ("Zoë Adams", "Zoë", "Adams", "Zoë"),
        ("  Zoë   Adams ", "Zoë", "Adams", "Zoë"),
        ("Adams, Zoë", "Zoë", "Adams", "Zoë"),
        ("Adams, Mary Ann", "Mary Ann", "Adams", "Mary Ann"),
        ("Dr. Zoë van Dijk", "Zoë", "van Dijk", "Zoë"),
        ("Ms Zoë", "Zoë", "", "Zoë"),
        ("Zoë", "Zoë", "", "Zoë"),
        ("Zoë Adams, PhD", "Zoë", "Adams, PhD", "Zoë"),
        ("Ana, the 1st", "Ana", "the 1st", "Ana"),
        ("J. R. Hartley", "J.", "R. Hartley", "J. R. Hartley"),  # an initial greets no one
        ("山田太郎", "山田太郎", "", "山田太郎"),
        ("zoe@example.com", "zoe@example.com", "", ""),  # an address is no name
        ("", "", "", ""),
    ],
)
def test_names_split_and_greet(full, first, last, greeting):
    assert split_name(full) == (first, last)
    assert greeting_name(full) == greeting


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("Email Address;First Name;Last Name\r\n", ";"),
        ('"Email Address";"First Name";"Last Name"\n', ";"),
        ("email,name,status\n", ","),
        ("Email Address\tFirst Name\tLast Name\n", "\t"),
        ('"Name, as typed";email;x\n', ";"),
        ("email\n", ","),  # one column: nothing to split
        ("", ","),
    ],
)
def test_the_delimiter_is_sniffed_from_the_header_row(header, delimiter):
    assert sniff_delimiter(header) == delimiter


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-01", dt.datetime(2024, 5, 1, tzinfo=dt.UTC)),
        ("2024-05-01 09:30:00", dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.UTC)),
        ("2024-05-01T09:30:00.000Z", dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.UTC)),
        ("2024-05-01 11:30:00+02:00", dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.UTC)),
        ("2024-05-01 09:30:00 UTC", dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.UTC)),
        ("1714555800", dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.UTC)),
    ],
)
def test_dates_are_read_as_the_tools_write_them(raw, expected):
    assert csvformats.parse_date(raw) == expected


@pytest.mark.parametrize("raw", ["last tuesday", "05/01/2024", "2024-13-01", "123"])
def test_what_is_no_date_is_refused(raw):
    with pytest.raises(ValueError):
        csvformats.parse_date(raw)


@pytest.mark.parametrize(
    ("word", "tool", "status"),
    [
        ("Subscribed", "", Status.active),
        ("enabled", "listmonk", Status.active),
        ("premium", "Buttondown", Status.active),
        ("unactivated", "Buttondown", Status.pending),
        ("cleaned", "Mailchimp", Status.bounced),
        ("blocklisted", "listmonk", Status.unsubscribed),
        ("cancelled", "Kit", Status.unsubscribed),
        ("complained", "Kit", Status.unsubscribed),
        ("inactive", "Kit", Status.pending),  # not yet confirmed there
        ("inactive", "Beehiiv", Status.unsubscribed),
        ("Needs Attention", "Beehiiv", Status.bounced),
        ("zombie", "", None),
    ],
)
def test_status_words(word, tool, status):
    assert csvformats.status_word(word, tool) == status


def test_no_word_for_leaving_means_active():
    left = {w for w, s in csvformats.STATUS_WORDS.items() if s == Status.active}
    assert not left & {"unsubscribed", "cleaned", "bounced", "cancelled", "blocklisted"}
