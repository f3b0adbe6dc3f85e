"""One address rule for every way in: CLI add, import, test copies and the signup form."""

from __future__ import annotations

import pytest
from conftest import use_smtp
from fastapi.testclient import TestClient

from newsletter.config import load_config
from newsletter.storage.subscribers import SubscriberError, normalize_email
from newsletter.web import create_app

LOCAL_64 = "a" * 64


def domain(length: int) -> str:
    """A valid domain of `length` characters (labels of at most 63)."""
    last = length - 2 * 64 - len(".com")
    return ".".join(["d" * 63, "e" * 63, "f" * last]) + ".com"


AT_LIMIT = f"{LOCAL_64}@{domain(189)}"
PAST_LIMIT = f"{LOCAL_64}@{domain(190)}"
assert (len(AT_LIMIT), len(PAST_LIMIT)) == (254, 255)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # In the style of the isemail test corpus (RFC 5321 limits).
        (f"{LOCAL_64}@example.com", f"{LOCAL_64}@example.com"),
        ("a" * 65 + "@example.com", None),
        ("a" * 200 + "@example.com", None),
        (AT_LIMIT, AT_LIMIT),
        (PAST_LIMIT, None),
        ("  Ana@Example.COM  ", "ana@example.com"),  # surrounding spaces are trimmed
        ('"a\r\n"@example.com', None),
        ("a@example.com\r\n", None),  # never trimmed: refused
        ("\na@example.com", None),
        ("a@example.com\x00", None),
        ("\ta@example.com", None),
        ("a@exa\u2028mple.com", None),
        ("a b@example.com", None),
    ],
    ids=[
        "local-64",
        "local-65",
        "local-200",
        "total-254",
        "total-255",
        "spaces-trimmed",
        "quoted-crlf",
        "trailing-crlf",
        "leading-lf",
        "nul",
        "tab",
        "line-separator",
        "inner-space",
    ],
)
def test_the_address_rule(raw, expected):
    if expected is None:
        with pytest.raises(SubscriberError):
            normalize_email(raw)
    else:
        assert normalize_email(raw) == expected


def test_a_control_character_is_refused_in_words_that_name_it():
    with pytest.raises(SubscriberError) as caught:
        normalize_email("a@example.com\r\n")
    assert str(caught.value) == (
        "'a@example.com\\r\\n': contains a line break or control character; expected "
        "name@example.com"
    )


@pytest.mark.parametrize("raw", ["a" * 65 + "@example.com", "a@example.com\r\n"])
def test_cli_add_and_import_refuse_what_the_rule_refuses(cli, folder, raw):
    result = cli("subscribers", "add", raw)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.startswith(f"error: {raw!r}")
    (folder / "list.csv").write_text(f'email\n"{raw}"\nok@example.com\n', newline="")
    result = cli("subscribers", "import", "list.csv")
    assert result.exit_code == 1
    assert "1 added" in result.stdout
    assert result.stderr.startswith(f"error: list.csv:2: {raw!r}")
    assert cli("subscribers", "list").output == "ok@example.com\tactive\t\n"


def test_the_signup_form_refuses_a_65_character_local_part(folder, smtp):
    use_smtp(folder, smtp.port)
    config = load_config(folder / "newsletter.toml", environ={})
    with TestClient(create_app(config)) as client:
        answer = client.post("/subscribe", json={"email": "a" * 65 + "@example.com"})
        assert answer.status_code == 400
        ok = client.post("/subscribe", json={"email": LOCAL_64 + "@example.com"})
        assert ok.status_code == 200
