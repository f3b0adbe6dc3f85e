"""Confirmation and unsubscribe links as readers (and their mail scanners) use them:
a GET only shows a button, every unexpired link works, a used one says so with a
200, and the unsubscribe page offers the way back."""

from __future__ import annotations

import re
import time
from html import unescape

import pytest
from sqlalchemy import inspect, select
from test_web import client, confirm, link_in, mails, site, subscriber, unsubscribe_token

from newsletter.config import load_config
from newsletter.storage import db
from newsletter.storage.models import Status, Subscriber
from newsletter.tokens import Signer, TokenError, TokenExpired

pytestmark = pytest.mark.usefixtures("backend")
__all__ = ["client", "site"]  # fixtures, shared with test_web


def row(folder, email) -> dict:
    found = subscriber(folder, email)
    return {c.key: getattr(found, c.key) for c in inspect(Subscriber).column_attrs}


def token_of(link: str) -> str:
    return link.split("token=", 1)[1]


def sign_up(client, smtp, email: str, count: int, name: str = "") -> str:
    """Sign up and wait for that signup's email: its confirmation link."""
    assert client.post("/subscribe", data={"email": email, "name": name}).status_code == 200
    return link_in(mails(smtp, count)[count - 1], "/confirm")


def test_a_get_or_head_of_the_link_changes_nothing_and_shows_one_button(client, folder, smtp):
    link = sign_up(client, smtp, "ana@example.com", 1)
    before = row(folder, "ana@example.com")
    page = client.get(link)
    assert client.head(link).status_code == 200
    assert row(folder, "ana@example.com") == before  # still pending, nothing written
    assert before["status"] == Status.pending
    assert page.status_code == 200
    text = unescape(page.text)
    assert "The Pipeline Weekly" in text and "a\u2022\u2022@example.com" in text
    assert "ana@example.com" not in text
    assert page.text.count("<button") == 1 and "Confirm my subscription" in text
    form = re.search(r'<form[^>]*method="post"[^>]*action="([^"]+)"', page.text).group(1)
    assert form == "https://news.example.com/confirm"
    assert f'name="token" value="{token_of(link)}"' in page.text
    time.sleep(0.2)
    assert len(smtp.handler.received) == 1  # and no welcome email


def test_the_post_confirms_and_clicking_again_answers_200(client, folder, smtp):
    link = sign_up(client, smtp, "ana@example.com", 1, name="Ana")
    joined = client.post("/confirm", data={"token": token_of(link)})
    assert joined.status_code == 200 and "You're in!" in unescape(joined.text)
    person = subscriber(folder, "ana@example.com")
    assert person.status == Status.active and person.name == "Ana" and person.pending_name is None
    assert mails(smtp, 2)[1].message["Subject"] == "Welcome to The Pipeline Weekly"
    confirmed_at = person.confirmed_at
    for again in (
        client.get(link),
        client.post("/confirm", data={"token": token_of(link)}),
        client.post(link),  # the token in the URL, as a bare POST to the link sends it
    ):
        assert again.status_code == 200
        assert "You're already subscribed" in unescape(again.text)
        assert "<button" not in again.text
    assert subscriber(folder, "ana@example.com").confirmed_at == confirmed_at
    time.sleep(0.2)
    assert len(smtp.handler.received) == 2  # one welcome, not one per click


def test_after_two_signups_the_first_link_still_confirms(client, folder, smtp):
    first = sign_up(client, smtp, "ana@example.com", 1)
    second = sign_up(client, smtp, "ana@example.com", 2)
    assert first != second
    assert "You're in!" in unescape(confirm(client, first).text)
    assert subscriber(folder, "ana@example.com").status == Status.active
    assert "already subscribed" in unescape(client.get(second).text)


def test_an_erased_then_reused_id_cannot_be_confirmed_by_an_old_link(
    client, folder, smtp, cli, backend
):
    old = sign_up(client, smtp, "old@example.com", 1)
    old_id = subscriber(folder, "old@example.com").id
    assert cli("subscribers", "erase", "old@example.com", "--yes").exit_code == 0
    new = sign_up(client, smtp, "new@example.com", 2)
    if backend == "sqlite":
        assert subscriber(folder, "new@example.com").id == old_id  # SQLite reuses the id
    for answer in (client.get(old), client.post("/confirm", data={"token": token_of(old)})):
        assert answer.status_code == 400 and "no longer works" in answer.text
        assert 'name="email"' in answer.text  # the signup form, to join again
    assert subscriber(folder, "new@example.com").status == Status.pending
    assert "You're in!" in unescape(confirm(client, new).text)


def test_a_link_from_before_an_erasure_cannot_confirm_the_same_address_again(
    client, folder, smtp, cli, monkeypatch
):
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 5)  # the old link is 5 s older
    old = sign_up(client, smtp, "ana@example.com", 1)
    monkeypatch.setattr(time, "time", real)
    assert cli("subscribers", "erase", "ana@example.com", "--yes").exit_code == 0
    new = sign_up(client, smtp, "ana@example.com", 2)  # someone types the address again
    assert client.post("/confirm", data={"token": token_of(old)}).status_code == 400
    assert subscriber(folder, "ana@example.com").status == Status.pending
    assert "You're in!" in unescape(confirm(client, new).text)


def test_a_used_link_cannot_bring_back_someone_who_left(client, folder, smtp):
    first = sign_up(client, smtp, "ana@example.com", 1)
    second = sign_up(client, smtp, "ana@example.com", 2)
    confirm(client, first)
    token = unsubscribe_token(folder, "ana@example.com")
    assert client.post(f"/unsubscribe?token={token}").status_code == 200
    for link in (first, second):
        for answer in (client.get(link), client.post("/confirm", data={"token": token_of(link)})):
            assert answer.status_code == 200 and "already used" in answer.text
            assert 'name="email"' in answer.text
    assert subscriber(folder, "ana@example.com").status == Status.unsubscribed
    mails(smtp, 3)  # the welcome
    # Signing up again gives a link that works.
    third = sign_up(client, smtp, "ana@example.com", 4)
    assert "You're in!" in unescape(confirm(client, third).text)


@pytest.mark.parametrize("method", ["get", "post"])
def test_damaged_links_get_a_friendly_page_with_the_form(client, method):
    signer = Signer("another-secret-another-secret!!")
    for token in ("", "x.y", signer.confirm_token(1, "a@example.com", "")):
        answer = getattr(client, method)(f"/confirm?token={token}")
        assert answer.status_code == 400 and "not valid" in answer.text
        assert 'name="email"' in answer.text and "Traceback" not in answer.text


def test_confirm_tokens_check_their_shape_and_age(config):
    from newsletter.tokens import secret_of

    signer = Signer(secret_of(config))
    token = signer.confirm_token(7, "a@example.com", "Ana")
    link = signer.confirm_of(token, 60)
    assert link.subscriber_id == 7 and signer.matches(link.address, "a@example.com")
    assert link.name == signer.name_digest("Ana") != signer.name_digest("")
    assert abs(link.issued.timestamp() - time.time()) < 1
    with pytest.raises(TokenError):  # a signed value of the wrong shape
        signer.confirm_of(signer._confirm.dumps([7, "x"]), 60)
    with pytest.raises(TokenExpired):
        signer.confirm_of(token, -1)
    with pytest.raises(TokenError):  # an unsubscribe token is not a confirmation
        signer.confirm_of(signer.unsubscribe_token(7, "a@example.com"), 60)


def active(folder, email) -> str:
    config = load_config(folder / "newsletter.toml", environ={})
    with db.session(db.connect(config)) as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email == email))


def test_unsubscribe_then_resubscribe_from_the_same_link(client, folder, cli):
    cli("subscribers", "add", "ana@example.com")
    token = unsubscribe_token(folder, "ana@example.com")
    page = client.get(f"/unsubscribe?token={token}")
    assert page.status_code == 200 and "Resubscribe" not in page.text
    assert client.head(f"/unsubscribe?token={token}").status_code == 200
    assert active(folder, "ana@example.com") == Status.active
    done = client.post(f"/unsubscribe?token={token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "You're unsubscribed" in unescape(done.text)
    assert "Changed your mind?" in done.text
    assert 'action="https://news.example.com/resubscribe"' in done.text
    assert active(folder, "ana@example.com") == Status.unsubscribed
    # The footer link of an old issue, opened after leaving, offers the way back too.
    later = client.get(f"/unsubscribe?token={token}")
    assert "Changed your mind?" in later.text and "Resubscribe" in later.text
    back = client.post("/resubscribe", data={"token": token})
    assert back.status_code == 200 and "You're back!" in unescape(back.text)
    person = subscriber(folder, "ana@example.com")
    assert person.status == Status.active and person.unsubscribed_at is None
    assert person.consent_source == "https://news.example.com/unsubscribe (resubscribe button)"
    assert person.consent_text.startswith("Yes, send me The Pipeline Weekly")
    again = client.post("/resubscribe", data={"token": token})
    assert "You're back!" in unescape(again.text)  # clicked twice: still fine


def test_resubscribe_needs_the_form_after_a_bounce_or_an_erasure(client, folder, cli, backend):
    cli("subscribers", "add", "old@example.com")
    token = unsubscribe_token(folder, "old@example.com")
    config = load_config(folder / "newsletter.toml", environ={})
    with db.session(db.connect(config)) as s:
        s.get(Subscriber, subscriber(folder, "old@example.com").id).status = Status.bounced
    answer = client.post("/resubscribe", data={"token": token})
    assert answer.status_code == 200 and "sign up" in answer.text and 'name="email"' in answer.text
    assert active(folder, "old@example.com") == Status.bounced
    client.post(f"/unsubscribe?token={token}")  # unsubscribing, then resubscribing,
    client.post("/resubscribe", data={"token": token})  # must not undo the bounce
    assert active(folder, "old@example.com") == Status.bounced
    cli("subscribers", "erase", "old@example.com", "--yes")
    cli("subscribers", "add", "new@example.com")
    cli("subscribers", "remove", "new@example.com")
    client.post("/resubscribe", data={"token": token})  # the id may be new@'s now
    assert active(folder, "new@example.com") == Status.unsubscribed
    forged = Signer("another-secret-another-secret!!").unsubscribe_token(1, "new@example.com")
    assert client.post("/resubscribe", data={"token": forged}).status_code == 400
    assert active(folder, "new@example.com") == Status.unsubscribed
