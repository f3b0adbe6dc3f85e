"""[[smtp.relays]] in newsletter.toml: what a relay takes from [smtp], where its
password comes from, and each mistake as one line naming the entry and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import use_smtp
from test_relays import ISSUE, config_of, use_relays

from newsletter.compose.configcheck import concerns
from newsletter.config import ConfigError, load_config


def test_smtp_alone_is_the_one_relay(folder):
    use_smtp(folder, 2600, rate=7, connections=3)
    (relay,) = config_of(folder).smtp.relay_list()
    assert (relay.name, relay.settings.host, relay.settings.port) == (
        "127.0.0.1:2600",
        "127.0.0.1",
        2600,
    )
    assert (relay.rate, relay.connections) == (7, 3)


def test_a_relay_takes_what_it_leaves_out_from_smtp_but_never_the_login(folder):
    use_relays(folder, [{"host": '"mx.example.com"'}], rate=9, connections=5)
    path = folder / "newsletter.toml"
    path.write_text(path.read_text().replace("[smtp]\n", '[smtp]\nusername = "dana"\n'))
    env = {"NEWSLETTER_SMTP_PASSWORD": "smtp-secret"}
    (relay,) = load_config(path, environ=env).smtp.relay_list()
    assert relay.name == "mx.example.com:1"
    assert (relay.rate, relay.connections, relay.settings.security) == (9, 5, "none")
    assert relay.settings.username is None and relay.settings.password is None
    assert relay.settings.timeout == 30.0 and relay.settings.relays == []


def test_a_relays_password_comes_from_its_own_variable(folder):
    use_relays(folder, [{"name": '"mx-1"', "port": 25, "username": '"dana"'}])
    env = {"NEWSLETTER_SMTP_RELAY_MX_1_PASSWORD": "s3cr3t"}
    (relay,) = load_config(folder / "newsletter.toml", environ=env).smtp.relay_list()
    assert relay.settings.password.get_secret_value() == "s3cr3t"


def config_error(folder: Path, relays: list[dict], environ: dict | None = None) -> str:
    use_relays(folder, relays)
    with pytest.raises(ConfigError) as caught:
        load_config(folder / "newsletter.toml", environ=environ or {})
    return str(caught.value)


def test_relay_config_mistakes_name_the_entry_and_field(folder):
    message = config_error(folder, [{"port": 25}, {"port": 25}])
    lines = folder.joinpath("newsletter.toml").read_text().splitlines()
    second = [n for n, line in enumerate(lines, 1) if line == "[[smtp.relays]]"][1]
    assert message == (
        f"{folder / 'newsletter.toml'}:{second}: smtp.relays[2].name: '127.0.0.1:25' is "
        "relay 1's name already; give each relay a name of its own"
    )
    message = config_error(folder, [{"port": 25}, {"port": 99999}])
    assert message.endswith(
        "smtp.relays[2].port: 99999 is out of range; expected a value less than or equal to 65535"
    )
    message = config_error(folder, [{"name": '"a-b"'}, {"name": '"a_b"'}])
    assert "smtp.relays[2].name: 'a_b' gives the same password variable as relay 1's 'a-b'" in (
        message
    )
    assert "smtp.relays[1].prot: is not a known field (did you mean 'port'?)" in config_error(
        folder, [{"prot": 25}]
    )
    assert "smtp.relays[1].security: 'ssl' is not allowed" in config_error(
        folder, [{"security": '"ssl"'}]
    )


def test_a_relay_password_in_newsletter_toml_is_refused(folder):
    message = config_error(folder, [{"name": '"mx"', "password": '"hunter2"'}])
    assert "smtp.relays[1].password: secrets do not belong in newsletter.toml; set " in message
    assert "NEWSLETTER_SMTP_RELAY_MX_PASSWORD instead" in message and "hunter2" not in message


def test_a_password_variable_for_no_relay_is_refused(folder):
    env = {"NEWSLETTER_SMTP_RELAY_MZ_PASSWORD": "s3cr3t"}
    message = config_error(folder, [{"name": '"mx"'}], env)
    assert message.startswith(
        "NEWSLETTER_SMTP_RELAY_MZ_PASSWORD: no relay in [[smtp.relays]] has this password "
        "variable (theirs: NEWSLETTER_SMTP_RELAY_MX_PASSWORD)"
    )
    assert "s3cr3t" not in message


def test_a_relay_config_mistake_is_one_error_line_from_the_cli(cli, folder):
    use_relays(folder, [{"port": 25, "connections": 0}])
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 1
    assert "smtp.relays[1].connections: 0 is out of range" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_a_relay_login_without_its_password_is_caught_before_any_connection(cli, folder):
    use_relays(folder, [{"name": '"mx"', "port": 25}, {"name": '"auth"', "username": '"dana"'}])
    result = cli("check", ISSUE)
    assert result.exit_code == 1
    assert (
        "error: smtp.relays[2].username is 'dana' but no password is set, so the relay would "
        "refuse the login; set NEWSLETTER_SMTP_RELAY_AUTH_PASSWORD" in result.output
    )
    env = {"NEWSLETTER_SMTP_RELAY_AUTH_PASSWORD": "s3cr3t"}
    config = load_config(folder / "newsletter.toml", environ=env)
    assert not [c for c in concerns(config) if "relays" in c.message]
