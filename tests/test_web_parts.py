"""The parts under the pages: the one place that builds links, and the emails a
stopping server still owes."""

from __future__ import annotations

import pytest
from conftest import use_smtp
from fastapi.testclient import TestClient

from newsletter.config import load_config
from newsletter.links import Links
from newsletter.tokens import Signer
from newsletter.web import create_app

SIGNER = Signer("a-test-secret-a-test-secret")


def test_links_hang_under_the_base_url_with_or_without_its_slash():
    for base in ("https://news.example.com", "https://news.example.com/"):
        links = Links(base, SIGNER)
        assert links.home() == "https://news.example.com/"
        assert links.archive() == "https://news.example.com/archive"
        assert links.web("2026-11-24-x") == "https://news.example.com/archive/2026-11-24-x"
        assert links.feed() == "https://news.example.com/feed.xml"
        assert links.confirm("t.k") == "https://news.example.com/confirm?token=t.k"
        assert links.public_unsubscribe() == "https://news.example.com/unsubscribe"


def test_an_unsubscribe_link_carries_a_token_that_names_its_reader():
    url = Links("https://news.example.com", SIGNER).unsubscribe(7, "ana@example.com")
    prefix = "https://news.example.com/unsubscribe?token="
    assert url.startswith(prefix)
    subscriber_id, fingerprint = SIGNER.subscriber_of(url.removeprefix(prefix))
    assert subscriber_id == 7 and SIGNER.matches(fingerprint, "ana@example.com")


def test_unsubscribe_links_need_a_signer():
    with pytest.raises(ValueError, match="Signer"):
        Links("https://news.example.com").unsubscribe(7, "ana@example.com")


def test_a_stopping_server_still_sends_the_confirmation_it_promised(folder, smtp):
    use_smtp(folder, smtp.port)
    config = load_config(folder / "newsletter.toml", environ={})
    with TestClient(create_app(config)) as client:
        assert client.post("/subscribe", data={"email": "ana@example.com"}).status_code == 200
        assert smtp.handler.received == []  # it leaves after the reply...
    (mail,) = smtp.handler.received  # ...and before the server is gone
    assert mail.rcpt == "ana@example.com"
