"""newsletter.toml: validation, environment overrides and secrets."""

from __future__ import annotations

import pytest

from newsletter.config import ConfigError, load_config


def edit(folder, old: str, new: str) -> None:
    path = folder / "newsletter.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def error(folder, environ=None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(folder / "newsletter.toml", environ=environ or {})
    return str(caught.value)


def test_init_config_loads_with_its_defaults(config, folder):
    assert config.newsletter.name == "The Pipeline Weekly"
    assert config.newsletter.weekday == "tuesday"
    assert config.database.url == "sqlite:///subscribers.db"
    assert config.root == folder.resolve()
    # init wrote a signing secret into the git-ignored secrets.toml
    assert len(config.web.secret_key.get_secret_value()) >= 32
    assert "secrets.toml" in (folder / ".gitignore").read_text()


def test_environment_overrides_any_key(folder):
    config = load_config(
        folder / "newsletter.toml",
        environ={"NEWSLETTER_SMTP_PORT": "2526", "NEWSLETTER_NEWSLETTER_NAME": "Env Name"},
    )
    assert config.smtp.port == 2526 and config.newsletter.name == "Env Name"


def test_password_comes_from_the_environment(folder):
    config = load_config(folder / "newsletter.toml", environ={"NEWSLETTER_SMTP_PASSWORD": "s3cr3t"})
    assert config.smtp.password.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(config)


def test_bad_environment_value_names_the_variable(folder):
    message = error(folder, {"NEWSLETTER_SMTP_PORT": "lots"})
    assert message == (
        "NEWSLETTER_SMTP_PORT: smtp.port: 'lots' is not a number; expected a number like 25"
    )


def test_misspelt_environment_variable_is_an_error(folder):
    assert "NEWSLETTER_SMTP_PROT: smtp.prot: is not a known field (did you mean 'port'?)" in (
        error(folder, {"NEWSLETTER_SMTP_PROT": "25"})
    )


def test_wrong_value_names_file_line_and_key(folder):
    edit(folder, "port = 2525", "port = 99999")
    message = error(folder)
    assert message.endswith(
        "newsletter.toml:36: smtp.port: 99999 is out of range; "
        "expected a value less than or equal to 65535"
    ), message


def test_missing_postal_address_is_named(folder):
    edit(folder, "postal_address =", "# postal_address =")
    assert "newsletter.toml:6: newsletter.postal_address: is missing: the law (CAN-SPAM" in error(
        folder
    )


def test_missing_section_is_named(folder):
    text = (folder / "newsletter.toml").read_text()
    (folder / "newsletter.toml").write_text(text.split("[sender]")[0])
    assert "sender: section [sender] is missing; add it" in error(folder)


def test_bad_email_address(folder):
    edit(folder, 'from_address = "dana@news.example.com"', 'from_address = "dana-at-example"')
    assert "sender.from_address: 'dana-at-example' is not a valid email address" in error(folder)


def test_unknown_key_is_an_error(folder):
    edit(folder, 'weekday = "tuesday"', 'weekday = "tuesday"\nwekday = "monday"')
    assert "newsletter.wekday: is not a known field (did you mean 'weekday'?)" in error(folder)


def test_bad_weekday_lists_the_choices(folder):
    edit(folder, 'weekday = "tuesday"', 'weekday = "tusday"')
    assert "newsletter.weekday: 'tusday' is not allowed; expected 'monday', 'tuesday'" in (
        error(folder)
    )


def test_crlf_in_from_name_is_refused(folder):
    edit(folder, 'from_name = "Dana Whitfield"', 'from_name = "Dana\\r\\nBcc: x@example.com"')
    assert "sender.from_name: contains a line break" in error(folder)


def test_toml_syntax_error_has_a_line(folder):
    edit(folder, 'language = "en"', "language = en")
    message = error(folder)
    assert "newsletter.toml:15: TOML syntax error" in message, message


def test_password_in_newsletter_toml_is_refused(folder):
    edit(folder, "[smtp]", '[smtp]\npassword = "hunter2"')
    message = error(folder)
    assert "smtp.password: secrets do not belong in newsletter.toml" in message
    assert "NEWSLETTER_SMTP_PASSWORD" in message and "hunter2" not in message


def test_only_secrets_belong_in_secrets_toml(folder):
    (folder / "secrets.toml").write_text('[smtp]\nhost = "mail.example.com"\n')
    assert (
        "secrets.toml:2: smtp.host: only smtp.password, web.secret_key, bounces.password "
        "belong here; "
        "other settings go in newsletter.toml"
    ) in error(folder)


def test_misspelt_secret_is_suggested_and_not_echoed(folder):
    (folder / "secrets.toml").write_text('[smtp]\npasword = "hunter2"\n')
    message = error(folder)
    assert "secrets.toml:2: smtp.pasword: did you mean 'smtp.password'?" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "value", ["98765432", '["hunter2", "x"]', "{ x = 'hunter2' }"], ids=["int", "list", "table"]
)
def test_wrongly_typed_secret_is_never_printed(folder, value):
    (folder / "secrets.toml").write_text(f"[smtp]\npassword = {value}\n")
    message = error(folder)
    assert "smtp.password: the value is not text" in message
    assert "hunter2" not in message and "98765432" not in message


def test_config_with_byte_order_mark_loads(folder):
    path = folder / "newsletter.toml"
    path.write_text("\ufeff" + path.read_text())
    assert load_config(path, environ={}).newsletter.name == "The Pipeline Weekly"


def test_misspelt_section_in_environment_variable_is_an_error(folder):
    assert error(folder, {"NEWSLETTER_SMPT_PORT": "2526"}).startswith(
        "NEWSLETTER_SMPT_PORT: there is no [smpt] section (did you mean NEWSLETTER_SMTP_…?)"
    )


def test_empty_environment_variable_counts_as_unset(folder):
    config = load_config(folder / "newsletter.toml", environ={"NEWSLETTER_WEB_SECRET_KEY": ""})
    assert len(config.web.secret_key.get_secret_value()) >= 32


def test_plain_value_where_a_section_belongs(folder):
    edit(folder, "[newsletter]", 'web = "x"\n[newsletter]')
    assert "web: is not a group of fields" in error(folder)


def test_language_code_is_explained(folder):
    edit(folder, 'language = "en"', 'language = "English"')
    assert "newsletter.language: 'English' is not a language code like en or pt-BR" in (
        error(folder)
    )


def test_missing_config_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "newsletter.toml", environ={})
    assert "run 'newsletter init'" in str(caught.value)


def test_init_creates_the_migrated_database_its_config_names(folder, config):
    from newsletter.storage import db

    assert (folder / "subscribers.db").is_file()  # before anything connects
    engine = db.connect(config, migrate=False)
    assert db.current_revision(engine) == db.HEAD
    engine.dispose()
