"""The public pages through FastAPI's TestClient, on a real SQLite file and a
real SMTP server catching the confirmation and welcome emails."""

from __future__ import annotations

import re
import time
from html import unescape
from xml.etree import ElementTree as ET

import pytest
from conftest import use_smtp
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.config import load_config
from newsletter.storage import db
from newsletter.storage.models import Status, Subscriber
from newsletter.tokens import Signer, secret_of
from newsletter.web import create_app

pytestmark = pytest.mark.usefixtures("backend")


def configure(folder, **web) -> None:
    if web:
        toml = folder / "newsletter.toml"
        lines = "".join(f"{k} = {v}\n" for k, v in web.items())
        toml.write_text(toml.read_text() + f"\n[web]\n{lines}")


@pytest.fixture
def site(folder, smtp):
    use_smtp(folder, smtp.port)
    opened = []

    def make(**web):
        configure(folder, **web)
        config = load_config(folder / "newsletter.toml", environ={})
        client = TestClient(create_app(config), raise_server_exceptions=False)
        opened.append(client.__enter__())  # one event loop, so emails sent after a reply arrive
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def mails(smtp, count: int, settle: float = 0.0):
    """The first `count` emails the server got (they leave after the reply)."""
    deadline = time.monotonic() + 10
    while len(smtp.handler.received) < count:
        assert time.monotonic() < deadline, f"expected {count} email(s)"
        time.sleep(0.01)
    time.sleep(settle)
    return smtp.handler.received[:count]


@pytest.fixture
def client(site):
    return site()


def subscriber(folder, email):
    config = load_config(folder / "newsletter.toml", environ={})
    with db.session(db.connect(config)) as s:
        return s.scalar(select(Subscriber).where(Subscriber.email == email))


def link_in(received, path: str) -> str:
    text = received.message.get_body(("plain",)).get_content()
    return re.search(rf"https://news\.example\.com({re.escape(path)}\?token=\S+)", text).group(1)


def confirm(client, link: str):
    """Open a confirmation link and press its button, as a reader does."""
    page = client.get(link)
    assert page.status_code == 200 and "Confirm my subscription" in page.text, page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    return client.post("/confirm", data={"token": token})


def test_front_page_has_the_form(client):
    page = client.get("/")
    assert page.status_code == 200
    for piece in (
        "The Pipeline Weekly",
        'name="email"',
        'name="name"',
        'name="website"',
        "Yes, send me The Pipeline Weekly by email",
        "/archive",
    ):
        assert piece in page.text
    assert "script" not in page.text.lower()
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


def test_signup_confirm_and_welcome(client, folder, smtp):
    answer = client.post("/subscribe", data={"email": "Ana@Example.com", "name": "Ana"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert subscriber(folder, "ana@example.com").status == Status.pending
    (mail,) = mails(smtp, 1, settle=0.2)
    assert len(smtp.handler.received) == 1
    assert mail.rcpt == "ana@example.com"
    assert mail.message["Subject"] == "Confirm your subscription to The Pipeline Weekly"
    page = client.get(link_in(mail, "/confirm"))
    assert "a\u2022\u2022@example.com" in page.text and "ana@example.com" not in page.text
    assert subscriber(folder, "ana@example.com").status == Status.pending
    answer = confirm(client, link_in(mail, "/confirm"))
    assert answer.status_code == 200 and "You're in!" in unescape(answer.text)
    person = subscriber(folder, "ana@example.com")
    assert person.status == Status.active and person.name == "Ana"
    assert person.confirmed_at and person.consent_at and person.signup_at
    assert person.signup_ip == "testclient"
    assert person.consent_text.startswith("Yes, send me The Pipeline Weekly")
    welcome = mails(smtp, 2)[1]
    assert welcome.message["Subject"] == "Welcome to The Pipeline Weekly"
    assert "/unsubscribe?token=" in welcome.message.get_body(("plain",)).get_content()


def test_the_answer_never_reveals_who_is_subscribed(client, folder, smtp):
    def answer(email, **extra):
        response = client.post("/subscribe", data={"email": email, **extra})
        return response.status_code, response.content

    first = answer("new@example.com")
    confirm(client, link_in(mails(smtp, 1)[0], "/confirm"))  # now active
    sent = len(mails(smtp, 2, settle=0.2))  # the confirmation and the welcome
    assert answer("new@example.com") == first  # active: same page...
    time.sleep(0.2)
    assert len(smtp.handler.received) == sent  # ...and nothing new sent
    assert answer("other@example.com") == first  # new
    assert answer("other@example.com") == first  # pending
    assert answer("bot@example.com", website="http://spam.example") == first  # honeypot
    assert subscriber(folder, "bot@example.com") is None


def test_json_signup_gives_the_same_answer_for_everyone(client, smtp):
    one = client.post("/subscribe", json={"email": "a@example.com"})
    two = client.post("/subscribe", json={"email": "a@example.com", "name": "A"})
    assert one.status_code == two.status_code == 200
    assert one.content == two.content
    assert one.json()["status"] == "check-your-inbox"


def test_confirmation_email_never_repeats_what_the_visitor_typed(client, smtp):
    client.post("/subscribe", data={"email": "x@example.com", "name": "Visit spam.example.com"})
    data = mails(smtp, 1)[0].data.decode()
    assert "spam.example.com" not in data and "Visit" not in data


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"email": "not-an-address"}, "does not look like an email address"),
        ({"email": "a@example.com", "name": "A\r\nBcc: b@example.com"}, "line break"),
        ({"email": "a" * 250 + "@example.com"}, "The email is too long"),
        ({"email": "a@example.com", "name": "n" * 101}, "The name is too long"),
        ({}, "does not look like an email address"),
    ],
)
def test_bad_input_gets_the_form_back_with_a_message(client, smtp, fields, problem):
    response = client.post("/subscribe", data=fields)
    assert response.status_code == 400
    assert problem in response.text and 'name="email"' in response.text
    time.sleep(0.1)
    assert smtp.handler.received == []


def test_confirm_link_expired_forged_reused_or_missing(client, folder, smtp, monkeypatch):
    client.post("/subscribe", data={"email": "a@example.com"})
    link = link_in(mails(smtp, 1)[0], "/confirm")
    assert "not valid" in client.get("/confirm?token=forged.token").text
    assert "not valid" in client.get("/confirm").text
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 8 * 86400)
    token = link.split("token=", 1)[1]
    for expired in (client.get(link), client.post("/confirm", data={"token": token})):
        assert expired.status_code == 400 and "expired" in expired.text
        assert 'name="email"' in expired.text
    monkeypatch.setattr(time, "time", real)
    assert subscriber(folder, "a@example.com").status == Status.pending
    assert "You're in!" in unescape(confirm(client, link).text)
    for reused in (client.get(link), client.post("/confirm", data={"token": token})):
        assert reused.status_code == 200 and "already subscribed" in unescape(reused.text)


def unsubscribe_token(folder, email) -> str:
    config = load_config(folder / "newsletter.toml", environ={})
    return Signer(secret_of(config)).unsubscribe_token(subscriber(folder, email).id, email)


def test_unsubscribe_page_changes_nothing_and_one_click_post_does(client, folder, cli):
    cli("subscribers", "add", "ana@example.com")
    token = unsubscribe_token(folder, "ana@example.com")
    page = client.get(f"/unsubscribe?token={token}")
    assert page.status_code == 200 and "<button" in page.text
    assert subscriber(folder, "ana@example.com").status == Status.active
    done = client.post(
        f"/unsubscribe?token={token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert done.status_code == 200 and "location" not in done.headers
    assert "You're unsubscribed" in unescape(done.text)
    assert subscriber(folder, "ana@example.com").status == Status.unsubscribed
    again = client.post(
        f"/unsubscribe?token={token}", files={"List-Unsubscribe": (None, "One-Click")}
    )
    assert again.status_code == 200  # idempotent, and multipart works too


def test_forged_unsubscribe_token_is_refused(client):
    for response in (client.get("/unsubscribe?token=x.y"), client.post("/unsubscribe?token=x.y")):
        assert response.status_code == 400 and "not valid" in response.text


def test_rate_limit_per_ip_answers_429_with_a_page(site):
    client = site(limit_per_ip='"3/minute"')
    codes = [
        client.post("/subscribe", data={"email": f"u{i}@example.com"}).status_code for i in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    assert "Too many tries" in client.post("/subscribe", data={"email": "z@example.com"}).text


def test_rate_limit_per_address_and_daily_confirmation_cap(site, smtp):
    client = site(limit_per_address='"3/hour"', confirmations_per_day=2)
    codes = [
        client.post("/subscribe", data={"email": "a@example.com"}).status_code for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    _, second = mails(smtp, 2, settle=0.2)
    assert len(smtp.handler.received) == 2  # the daily cap held the third email back
    # ...and past the cap the links already sent still work.
    assert "You're in!" in unescape(confirm(client, link_in(second, "/confirm")).text)


def test_oversized_body_is_refused(client):
    response = client.post(
        "/subscribe",
        content=b"email=" + b"a" * 20_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


def test_no_stack_trace_reaches_a_visitor(client, monkeypatch):
    from newsletter.service import signup

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(signup, "request", broken)
    response = client.post("/subscribe", data={"email": "a@example.com"})
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "secret internals" not in response.text and "Traceback" not in response.text


def test_archive_web_version_and_feed(client, folder, cli, smtp):
    cli("subscribers", "add", "ana@example.com", "--name", "Ana")
    assert cli("send", "2026-11-24-survival-of-the-fittest-funnel", "--yes").exit_code == 0
    archive = client.get("/archive")
    assert "Survival of the Fittest Funnel" in archive.text
    web = client.get("/archive/2026-11-24-survival-of-the-fittest-funnel")
    assert web.status_code == 200 and "Hi there," not in web.text and "Ana" not in web.text
    assert "token=" not in web.text
    assert client.get("/archive/nope").status_code == 404
    feed = ET.fromstring(client.get("/feed.xml").content)  # noqa: S314 (our own feed)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    (entry,) = feed.findall("a:entry", ns)
    assert (
        entry.find("a:link", ns)
        .get("href")
        .endswith("/archive/2026-11-24-survival-of-the-fittest-funnel")
    )


def test_health_and_not_found(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and "There is no page here" in missing.text


def test_cors_allows_only_configured_origins(site):
    client = site(cors_origins='["https://editor.example.com"]')
    allowed = client.options(
        "/subscribe",
        headers={"Origin": "https://editor.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.headers.get("access-control-allow-origin") == "https://editor.example.com"
    other = client.options(
        "/subscribe",
        headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in other.headers


def test_erase_keeps_only_a_hash_and_blocks_reimport(cli, folder, client, smtp):
    cli("subscribers", "add", "ana@example.com", "--name", "Ana")
    result = cli("subscribers", "erase", "ana@example.com", "--yes")
    assert (
        result.output == "Erased ana@example.com; only a hash remains, so imports will skip it.\n"
    )
    assert cli("subscribers", "show", "ana@example.com").exit_code == 1
    (folder / "list.csv").write_text("email\nana@example.com\n")
    assert "0 added" in cli("subscribers", "import", "list.csv").output
    assert "was erased on request" in cli("subscribers", "add", "ana@example.com").stderr
    client.post("/subscribe", data={"email": "ana@example.com"})  # they may opt in again
    confirm(client, link_in(mails(smtp, 1)[0], "/confirm"))
    assert subscriber(folder, "ana@example.com").status == Status.active


def test_form_snippet_posts_to_the_site(cli):
    snippet = cli("form-snippet").output
    assert 'action="https://news.example.com/subscribe"' in snippet
    assert 'name="website"' in snippet and 'name="email"' in snippet


def test_someone_who_unsubscribed_can_rejoin_through_confirmation(client, folder, cli, smtp):
    cli("subscribers", "add", "ana@example.com")
    cli("subscribers", "remove", "ana@example.com")
    client.post("/subscribe", data={"email": "ana@example.com"})
    assert subscriber(folder, "ana@example.com").status == Status.unsubscribed  # not yet
    assert "You're in!" in unescape(confirm(client, link_in(mails(smtp, 1)[0], "/confirm")).text)
    assert subscriber(folder, "ana@example.com").status == Status.active


def test_an_old_unsubscribe_link_cannot_touch_whoever_gets_the_id_next(
    client, folder, cli, backend
):
    cli("subscribers", "add", "old@example.com")
    old_token = unsubscribe_token(folder, "old@example.com")
    old_id = subscriber(folder, "old@example.com").id
    cli("subscribers", "erase", "old@example.com", "--yes")
    cli("subscribers", "add", "new@example.com")
    if backend == "sqlite":
        assert subscriber(folder, "new@example.com").id == old_id  # SQLite reuses the id
    assert client.post(f"/unsubscribe?token={old_token}").status_code == 200
    assert subscriber(folder, "new@example.com").status == Status.active


def test_a_name_typed_by_someone_else_is_not_applied(client, folder, smtp):
    signups = [
        ("vic@example.com", "Cheap pills"),
        ("vic@example.com", "Victoria"),
        ("zoe@example.com", "Zoë"),
        ("zoe@example.com", "Cheap pills"),
    ]
    for n, (email, name) in enumerate(signups, 1):
        client.post("/subscribe", data={"email": email, "name": name})
        mails(smtp, n)  # one at a time: the links in the order they were asked for
    vic_spam, vic_own, zoe_own, _ = (link_in(m, "/confirm") for m in mails(smtp, 4))
    assert "You're in!" in unescape(confirm(client, vic_own).text)
    assert subscriber(folder, "vic@example.com").name == "Victoria"
    assert "already subscribed" in unescape(client.get(vic_spam).text)
    assert subscriber(folder, "vic@example.com").name == "Victoria"
    # Every link confirms, but only the latest signup's own link applies its name.
    assert "You're in!" in unescape(confirm(client, zoe_own).text)
    assert subscriber(folder, "zoe@example.com").name == ""


def test_typed_values_are_escaped_when_the_form_comes_back(client):
    page = client.post("/subscribe", data={"email": '"><script>alert(1)</script>', "name": "<b>"})
    assert page.status_code == 400
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert 'value="&lt;b&gt;"' in page.text


@pytest.mark.parametrize(
    "body",
    [b"[" * 5000 + b"]" * 5000, b"{not json", b'["a@example.com"]', b'{"email": ["x"]}'],
    ids=["deep", "broken", "array", "field-array"],
)
def test_malformed_json_is_a_400_not_a_crash(client, body):
    response = client.post("/subscribe", content=body, headers={"Content-Type": "Application/JSON"})
    assert response.status_code == 400
    assert "error" in response.json()


def test_head_works_and_wrong_methods_say_what_is_allowed(client, folder, smtp):
    client.post("/subscribe", data={"email": "a@example.com"})
    link = link_in(mails(smtp, 1)[0], "/confirm")
    assert client.head(link).status_code == 200  # a link checker confirms nobody
    assert subscriber(folder, "a@example.com").status == Status.pending
    assert client.head("/").status_code == 200
    assert client.head("/feed.xml").status_code == 200
    put = client.put("/")
    assert put.status_code == 405 and "GET" in put.headers["allow"]
    assert client.get("/archive/", follow_redirects=False).status_code == 404  # no redirect


def test_streamed_body_over_the_limit_is_refused(client):
    def chunks():
        for _ in range(40):
            yield b"x" * 1024

    response = client.post(
        "/subscribe",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


def test_tokens_are_not_interchangeable(client, folder, cli):
    cli("subscribers", "add", "ana@example.com")
    unsubscribe = unsubscribe_token(folder, "ana@example.com")
    assert "not valid" in client.get(f"/confirm?token={unsubscribe}").text
    assert "not valid" in client.post("/confirm", data={"token": unsubscribe}).text
    other = Signer("another-secret-another-secret!!").unsubscribe_token(1, "ana@example.com")
    assert client.post(f"/unsubscribe?token={other}").status_code == 400
    assert subscriber(folder, "ana@example.com").status == Status.active


def test_empty_feed_is_valid_atom(client):
    feed = ET.fromstring(client.get("/feed.xml").content)  # noqa: S314 (our own feed)
    updated = feed.find("{http://www.w3.org/2005/Atom}updated").text
    assert updated and updated[:4].isdigit()
