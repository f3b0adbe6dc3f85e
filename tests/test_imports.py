"""Moving a list here from another tool: each tool's export imports with its people's
statuses, names, original dates and custom columns, and the first issue greets them
by their first name. Samples: tests/data/imports/ (written from each tool's documented
export columns)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import use_smtp

from newsletter.compose import scaffold

pytestmark = pytest.mark.usefixtures("backend")

DATA = Path(__file__).parent / "data" / "imports"
ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"

# file → (tool and delimiter as the summary names them, {email: (status, signup date,
# first name, last name)}). Everyone marked unsubscribed, cleaned or bounced there is
# never active here.
SAMPLES = {
    "mailchimp_subscribed.csv": (
        "Mailchimp export, semicolon-separated",
        {
            "zoe.adams@example.com": ("active", "2021-03-04T10:11:12", "Zoë", "Adams"),
            "mary.ann@example.com": ("active", "2022-07-19T18:30:00", "Mary Ann", "Lee"),
        },
    ),
    "mailchimp_unsubscribed.csv": (
        "Mailchimp export",
        {"left.early@example.com": ("unsubscribed", "2020-05-06T07:08:09", "Leo", "Fischer")},
    ),
    "mailchimp_cleaned.csv": (
        "Mailchimp export, tab-separated",
        {"gone.mailbox@example.com": ("bounced", "2019-01-02T03:04:05", "Gus", "Grant")},
    ),
    "substack.csv": (
        "Substack export",
        {
            "reader.one@example.com": ("active", "2022-09-01T08:00:00", None, None),
            "paying.reader@example.com": ("active", "2023-01-15T12:30:45.123000", None, None),
            "muted.reader@example.com": ("unsubscribed", "2021-06-30T23:59:59", None, None),
        },
    ),
    "buttondown.csv": (
        "Buttondown export",
        {
            "bea@example.com": ("active", "2020-02-29T09:00:00", None, None),
            "cal@example.com": ("unsubscribed", "2020-03-01T10:00:00", None, None),
            "dee@example.com": ("pending", "2024-04-04T04:04:04", None, None),
            "eli@example.com": ("active", "2019-12-31T23:00:00", None, None),
        },
    ),
    "listmonk.csv": (
        "listmonk export",
        {
            "fern@example.com": ("active", "2023-05-06T06:08:09.123456", "Fern", "Gully"),
            "gil@example.com": ("unsubscribed", "2022-01-01T00:00:00", "Gil", "Hart"),
        },
    ),
    "ghost.csv": (
        "Ghost export",
        {
            "hana@example.com": ("active", "2022-04-06T07:42:08", "Hana", "Ito"),
            "ivo@example.com": ("unsubscribed", "2021-11-11T11:11:11", "Ivo", "Petrov"),
        },
    ),
    "kit.csv": (
        "Kit export",
        {
            "jo@example.com": ("active", "2023-02-03T04:05:06", "Jo", None),
            "kai@example.com": ("unsubscribed", "2022-08-09T10:11:12", "Kai", None),
            "lu@example.com": ("bounced", "2021-07-08T09:10:11", "Lu", None),
            "max@example.com": ("unsubscribed", "2021-01-01T00:00:00", "Max", None),
            "nia@example.com": ("pending", "2024-06-07T08:09:10", "Nia", None),  # unconfirmed
        },
    ),
    "beehiiv.csv": (
        "Beehiiv export",
        {
            "oli@example.com": ("active", "2024-01-02T03:04:05", None, None),
            "pam@example.com": ("unsubscribed", "2023-03-04T05:06:07", None, None),
            "quin@example.com": ("pending", "2024-06-01T12:00:00", None, None),  # Unix time
            "rex@example.com": ("bounced", "2022-12-25T00:00:00", None, None),
        },
    ),
}


def show(cli, email: str, *options: str) -> dict:
    result = cli("subscribers", "show", email, "--json", *options)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def bare(when: str) -> str:
    """An ISO time without its UTC offset (SQLite hands times back without one)."""
    return when.removesuffix("+00:00")


def test_a_mailchimp_semicolon_export_imports_and_the_issue_greets_the_first_name(
    cli, folder, smtp
):
    (folder / "audience.csv").write_text(
        "Email Address;First Name;Last Name\nzoe@example.com;Zoë;Adams\n", encoding="utf-8"
    )
    imported = cli("subscribers", "import", "audience.csv")
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.startswith(
        "Imported audience.csv (Mailchimp export, semicolon-separated): 1 added"
    )
    use_smtp(folder, smtp.port)
    sent = cli("send", ISSUE, "--yes")
    assert sent.exit_code == 0, sent.output
    (received,) = smtp.handler.received
    message = received.message
    assert message["To"] == "Zoë Adams <zoe@example.com>"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Hi Zoë," in text and "Hi Zoë," in html
    assert "Zoë Adams" not in text and "Zoë Adams" not in html


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_each_tools_export_imports_with_its_statuses_names_and_dates(cli, folder, sample):
    shutil.copy(DATA / sample, folder / sample)
    result = cli("subscribers", "import", sample)
    found, people = SAMPLES[sample]
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Imported {sample} ({found}): {len(people)} added, ")
    for email, (status, signed_up, first, last) in people.items():
        record = show(cli, email)
        assert (record["status"], bare(record["created_at"])) == (status, signed_up), email
        assert (record["first_name"], record["last_name"]) == (first, last), email
        assert record["consent_source"] == f"imported by the editor from {sample}"


def test_consent_and_leaving_dates_come_from_the_export(cli, folder):
    for sample in ("mailchimp_subscribed.csv", "mailchimp_unsubscribed.csv"):
        shutil.copy(DATA / sample, folder / sample)
        assert cli("subscribers", "import", sample).exit_code == 0
    zoe = show(cli, "zoe.adams@example.com")
    # Opted in at 10:11:12, confirmed the double opt-in at 10:15:40.
    assert bare(zoe["confirmed_at"]) == bare(zoe["consent_at"]) == "2021-03-04T10:15:40"
    left = show(cli, "left.early@example.com")
    assert bare(left["unsubscribed_at"]) == "2023-11-12T13:14:15"
    assert left["confirmed_at"] == "2020-05-06T07:10:00+00:00"  # had opted in, then left


def test_people_who_left_or_bounced_elsewhere_are_never_made_active(cli, folder):
    cli("subscribers", "add", "left.early@example.com")  # on our list, active
    for sample in ("mailchimp_unsubscribed.csv", "mailchimp_cleaned.csv", "kit.csv"):
        shutil.copy(DATA / sample, folder / sample)
        assert cli("subscribers", "import", sample).exit_code == 0
    assert show(cli, "left.early@example.com")["status"] == "unsubscribed"
    # An older export that still lists them as subscribed does not bring anyone back.
    (folder / "old.csv").write_text(
        "Email Address,First Name,Status\n"
        "left.early@example.com,Leo,subscribed\n"
        "gone.mailbox@example.com,Gus,active\n"
        "kai@example.com,Kai,enabled\n"
    )
    result = cli("subscribers", "import", "old.csv")
    assert "3 kept unsubscribed or bounced" in result.stdout
    statuses = [show(cli, e)["status"] for e in ("left.early@example.com",
                "gone.mailbox@example.com", "kai@example.com")]  # fmt: skip
    assert statuses == ["unsubscribed", "bounced", "unsubscribed"]
    active = cli("subscribers", "list", "--status", "active").output
    assert active == "jo@example.com\tactive\tJo\n"


def test_the_summary_names_kept_and_ignored_columns(cli, folder):
    shutil.copy(DATA / "mailchimp_subscribed.csv", folder / "audience.csv")
    out = cli("subscribers", "import", "audience.csv").stdout.splitlines()
    assert out[1] == "Kept as attributes: Address, Phone Number, Company, NOTES, TAGS."
    assert out[2] == (
        "Ignored columns: MEMBER_RATING, OPTIN_IP, CONFIRM_IP, LATITUDE, LONGITUDE, GMTOFF, "
        "DSTOFF, TIMEZONE, CC, REGION, LAST_CHANGED, LEID, EUID (Mailchimp's own bookkeeping)."
    )
    (folder / "odd.csv").write_text("email,Email,,name\nana@example.com,other@example.com,x,Ana\n")
    out = cli("subscribers", "import", "odd.csv").stdout.splitlines()
    assert out[1] == (
        "Ignored columns: Email (a repeated column; the first one is used); column 3 (no header)."
    )


def test_statuses_added_are_summed_up(cli, folder):
    shutil.copy(DATA / "kit.csv", folder / "kit.csv")
    out = cli("subscribers", "import", "kit.csv").stdout.splitlines()
    assert out[1] == "Added by status: active 1, unsubscribed 2, bounced 1, pending 1."


def test_custom_columns_become_attributes_shown_and_exported(cli, folder):
    for sample in ("mailchimp_subscribed.csv", "buttondown.csv", "listmonk.csv"):
        shutil.copy(DATA / sample, folder / sample)
        assert cli("subscribers", "import", sample).exit_code == 0
    assert show(cli, "zoe.adams@example.com")["attributes"]["company"] == "Atelier Adams"
    # A JSON object column (listmonk's attributes, Buttondown's metadata) merges in, typed.
    assert show(cli, "fern@example.com")["attributes"] == {"city": "Lisbon", "projects": 3}
    assert show(cli, "bea@example.com")["attributes"] == {
        "company": "Bea Books", "plan": "team", "source": "import", "tags": "friends",
    }  # fmt: skip
    text = cli("subscribers", "show", "fern@example.com").stdout
    assert 'attributes       {"city": "Lisbon", "projects": 3}\n' in text


def test_an_export_imports_back_to_the_same_data(cli, folder, tmp_path):
    for sample in SAMPLES:
        shutil.copy(DATA / sample, folder / sample)
        assert cli("subscribers", "import", sample).exit_code == 0
    cli("subscribers", "add", "ana@example.com", "--first-name", "Ana Maria", "--last-name", "Li")
    assert cli("subscribers", "export", "all.csv").exit_code == 0
    emails = [line.split(",")[0] for line in (folder / "all.csv").read_text().splitlines()[1:]]
    before = {email: show(cli, email) for email in emails}

    other = tmp_path / "other"  # another newsletter folder, with its own database
    scaffold.init(other)
    config = ("--config", str(other / "newsletter.toml"))
    result = cli("subscribers", "import", str(folder / "all.csv"), *config)
    assert result.stdout.startswith(
        f"Imported {folder / 'all.csv'} (newsletter export): {len(emails)} added"
    )
    kept = ("name", "first_name", "last_name", "status", "attributes", "created_at",
            "confirmed_at", "consent_at", "unsubscribed_at", "consent_source")  # fmt: skip
    for email, record in before.items():
        after = show(cli, email, *config)
        assert {k: after[k] for k in kept} == {k: record[k] for k in kept}, email
    assert before["ana@example.com"]["name"] == "Ana Maria Li"


def test_a_date_that_is_no_date_is_reported_by_line(cli, folder):
    (folder / "list.csv").write_text(
        "email,created_at\nana@example.com,2024-05-01\nbo@example.com,last tuesday\n"
    )
    result = cli("subscribers", "import", "list.csv")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "error: list.csv:3: created_at 'last tuesday' is not a date; expected e.g. 2024-05-01 "
        "or 2024-05-01T09:30:00Z"
    )
    assert bare(show(cli, "ana@example.com")["created_at"]) == "2024-05-01T00:00:00"


def test_an_excel_sep_line_names_the_delimiter_and_lines_still_count(cli, folder):
    (folder / "list.csv").write_text(
        "sep=;\r\nE-mail;Name\r\nana@example.com;Ana Souza\r\nbad;Bo\r\n", encoding="utf-8"
    )
    result = cli("subscribers", "import", "list.csv")
    assert result.stdout.startswith("Imported list.csv (semicolon-separated): 1 added")
    assert result.stderr.startswith("error: list.csv:4: 'bad' is not a valid email address")
    assert show(cli, "ana@example.com")["first_name"] == "Ana"


@pytest.mark.parametrize(
    ("args", "stored"),
    [
        (["--name", "Zoë Adams"], ("Zoë Adams", "Zoë", "Adams")),
        (["--first-name", "Mary Ann", "--last-name", "Lee"], ("Mary Ann Lee", "Mary Ann", "Lee")),
        (["--name", "Dr. Zoë van Dijk"], ("Dr. Zoë van Dijk", "Zoë", "van Dijk")),
        (["--name", "Adams, Zoë", "--first-name", "Zoë"], ("Adams, Zoë", "Zoë", None)),
        ([], ("", None, None)),
    ],
)
def test_add_stores_first_and_last_names(cli, args, stored):
    assert cli("subscribers", "add", "zoe@example.com", *args).exit_code == 0
    record = show(cli, "zoe@example.com")
    assert (record["name"], record["first_name"], record["last_name"]) == stored
