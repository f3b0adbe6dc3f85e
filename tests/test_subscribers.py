"""The subscriber list, through the CLI, on a real SQLite file."""

from __future__ import annotations

import csv
import json

import pytest
from sqlalchemy import create_engine, inspect, text

from newsletter.config import load_config
from newsletter.storage import db

pytestmark = pytest.mark.usefixtures("backend")


def rows(path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_add_list_count_remove(cli, folder, backend):
    if backend != "sqlite":
        (folder / "subscribers.db").unlink()  # init made it; the configured database is used
    assert cli("subscribers", "add", "Ana@Example.COM", "--name", "Ana Souza").exit_code == 0
    assert cli("subscribers", "add", "bo@example.com").exit_code == 0
    listed = cli("subscribers", "list").output.splitlines()
    assert listed == ["ana@example.com\tactive\tAna Souza", "bo@example.com\tactive\t"]
    result = cli("subscribers", "remove", "ANA@example.com")
    assert result.output == "Unsubscribed ana@example.com.\n"
    assert cli("subscribers", "list", "--status", "active").output == "bo@example.com\tactive\t\n"
    count = cli("subscribers", "count").output
    assert "active        1" in count and "unsubscribed  1" in count and "total         2" in count
    assert (folder / "subscribers.db").is_file() == (backend == "sqlite")


def test_addresses_are_unique_case_insensitively(cli):
    cli("subscribers", "add", "ana@example.com")
    result = cli("subscribers", "add", "ANA@EXAMPLE.com")
    assert result.exit_code == 1
    assert result.stderr == "error: ana@example.com: is already on the list (active)\n"


def test_unsubscribed_cannot_be_added_back_by_the_editor(cli):
    cli("subscribers", "add", "ana@example.com")
    cli("subscribers", "remove", "ana@example.com")
    result = cli("subscribers", "add", "ana@example.com")
    assert result.exit_code == 1
    assert "is unsubscribed; they must opt in again themselves" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["add", "not-an-address"],
            "error: 'not-an-address' is not a valid email address (An email address must "
            "have an @-sign.); expected name@example.com",
        ),
        (
            ["add", "a@example.com", "--name", "Ana\r\nBcc: x@example.com"],
            "error: name 'Ana\\r\\nBcc: x@example.com': contains a line break or control "
            "character; remove it",
        ),
        (["remove", "nobody@example.com"], "error: nobody@example.com: is not on the list"),
        (["show", "Nobody@example.com"], "error: nobody@example.com: is not on the list"),
        (
            ["import", "missing.csv"],
            "error: missing.csv: cannot be read (No such file or directory); check the path",
        ),
    ],
)
def test_mistakes_are_one_line_errors(cli, args, message):
    result = cli("subscribers", *args)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", message + "\n")


def test_an_unknown_status_is_a_usage_error_listing_the_choices(cli):
    result = cli("subscribers", "list", "--status", "gone")
    assert result.exit_code == 2
    text = " ".join(result.stderr.replace("│", " ").split())
    assert (
        "Invalid value for '--status': Value error, 'gone' is not one of 'pending', 'active', "
        "'unsubscribed', 'bounced'." in text
    )


def test_import_reports_bad_rows_by_line_and_imports_the_rest(cli, folder):
    (folder / "list.csv").write_text(
        "Email,Name,Status\n"
        "ana@example.com,Ana,active\n"
        "not-an-email,Bad,active\n"
        "bo@example.com,Bo,\n"
        "ana@example.com,Ana Again,\n"
        "cy@example.com,Cy,zombie\n"
        "di@example.com,Di,unsubscribed\n"
    )
    result = cli("subscribers", "import", "list.csv")
    assert result.exit_code == 1
    assert "Imported list.csv: 3 added, 0 updated, 0 unchanged" in result.stdout
    errors = result.stderr.splitlines()
    assert errors[0].startswith("error: list.csv:3: 'not-an-email' is not a valid email address")
    assert (
        errors[1] == "error: list.csv:5: ana@example.com: repeats line 2; keep one row per address"
    )
    assert errors[2] == (
        "error: list.csv:6: status 'zombie' is not known; expected active, pending, "
        "unsubscribed or bounced (or another tool's word for one, like cleaned or cancelled)"
    )
    assert errors[3].startswith("3 row(s) skipped; fix them and import the file again")
    assert cli("subscribers", "list", "--status", "unsubscribed").output.startswith(
        "di@example.com"
    )


def test_reimport_is_idempotent_and_never_reactivates(cli, folder):
    (folder / "list.csv").write_text("email,name\nana@example.com,Ana\nbo@example.com,Bo\n")
    assert cli("subscribers", "import", "list.csv").exit_code == 0
    cli("subscribers", "remove", "bo@example.com")
    (folder / "again.csv").write_text(
        "email,name,status\nana@example.com,Ana,\nbo@example.com,Bo,active\n"
    )
    result = cli("subscribers", "import", "again.csv")
    assert result.exit_code == 0
    assert "0 added, 0 updated, 1 unchanged, 1 kept unsubscribed or bounced" in result.output
    assert "bo@example.com\tunsubscribed" in cli("subscribers", "list").output


def test_export_round_trips(cli, folder):
    cli("subscribers", "add", "ana@example.com", "--name", "Ana, the 1st")
    cli("subscribers", "add", "bo@example.com")
    assert (
        cli("subscribers", "export", "out.csv").output == "Exported 2 subscriber(s) to out.csv.\n"
    )
    exported = rows(folder / "out.csv")
    assert [(r["email"], r["name"], r["status"]) for r in exported] == [
        ("ana@example.com", "Ana, the 1st", "active"),
        ("bo@example.com", "", "active"),
    ]
    assert cli("subscribers", "import", "out.csv").exit_code == 0  # its own format imports


def test_show_includes_the_consent_record(cli):
    cli("subscribers", "add", "ana@example.com")
    record = json.loads(cli("subscribers", "show", "ana@example.com", "--json").output)
    assert record["consent_source"] == "added by the editor (cli)"
    assert (record["email"], record["status"], record["deliveries"]) == (
        "ana@example.com",
        "active",
        [],
    )
    assert record["created_at"].startswith("20") and record["consent_at"] == record["created_at"]
    text = cli("subscribers", "show", "ana@example.com").output.splitlines()
    assert "email            ana@example.com" in text and text[-1] == "deliveries       0"


def test_migrations_run_on_an_empty_database(cli, folder, backend):
    (folder / "subscribers.db").unlink(missing_ok=True)  # made by init; db upgrade makes it too
    result = cli("db", "upgrade")
    assert result.output == "Database upgraded.\n"
    config = load_config(folder / "newsletter.toml", environ={})
    engine = create_engine(db.resolve_url(config.database.url, config.root))
    tables = set(inspect(engine).get_table_names())
    assert {"subscribers", "sends", "deliveries", "alembic_version"} <= tables
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == db.HEAD
        if backend == "sqlite":
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()
    assert cli("db", "upgrade").output == "Database is up to date.\n"


def test_head_constant_matches_the_migration_scripts():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == db.HEAD


def test_bad_database_url_is_a_message(cli, folder):
    result = cli("subscribers", "count", "--config", str(folder / "newsletter.toml"))
    assert result.exit_code == 0
    toml = folder / "newsletter.toml"
    config_text = toml.read_text()
    start = config_text.index('url = "', config_text.index("[database]"))
    end = config_text.index("\n", start)
    toml.write_text(config_text[:start] + 'url = "nonsense"' + config_text[end:])
    result = cli("subscribers", "count")
    assert result.exit_code == 1
    assert "database.url: 'nonsense' is not a database URL" in result.stderr


def test_relative_sqlite_path_lives_in_the_newsletter_folder(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resolved = db.resolve_url("sqlite:///subscribers.db", folder)
    assert resolved == f"sqlite:///{folder / 'subscribers.db'}"
    assert db.resolve_url("postgresql://u@h/n", folder) == "postgresql+psycopg://u@h/n"


def test_unreachable_database_is_a_message(cli, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    result = cli("subscribers", "count")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: database.url: cannot open the database (")
    assert "check the URL and that the server is running" in result.stderr


GOOD_ROWS = b"".join(b"person%d@example.com\n" % n for n in range(1200))


@pytest.mark.parametrize(
    ("content", "message", "kept"),
    [
        (
            b"name\nAna\n",
            "list.csv:1: no email column in the header row; expected a header like "
            "email,name,status (Email Address and email_address work too)\n",
            0,
        ),
        (
            # 1,200 good rows first: two chunks of 500 commit, then the 200 rows
            # before the bad byte; the line number counts them all.
            b"email\n" + GOOD_ROWS + b"caf\xe9@example.com\n",
            "list.csv:1202: is not UTF-8 text (byte 0xe9); save the file as UTF-8 CSV",
            1200,
        ),
        (b'email,name\na@example.com,"Ana\nb@example.com,Bo\n', "list.csv:2: CSV error", 0),
        (b"email,name\na@example.com," + b"x" * 200_000 + b"\n", "list.csv:2: CSV error", 0),
    ],
    ids=["no-email-column", "latin1-byte", "unclosed-quote", "huge-field"],
)
def test_a_broken_csv_file_stops_at_its_line_keeping_the_rows_before(
    cli, folder, content, message, kept
):
    (folder / "list.csv").write_bytes(content)
    result = cli("subscribers", "import", "list.csv")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {message}")
    assert f"total         {kept}\n" in cli("subscribers", "count").output
    if kept:
        assert result.stderr.splitlines()[-1] == (
            "error: list.csv: the import stopped at line 1202; 1200 added, 0 updated, "
            "0 unchanged, 0 kept unsubscribed or bounced from lines 2 to 1201, which stay "
            "imported; fix the problem and import the file again (that is safe: rows already "
            "imported are left as they are)"
        )
        fixed = content.replace(b"caf\xe9", b"cafe")
        (folder / "list.csv").write_bytes(fixed)
        again = cli("subscribers", "import", "list.csv")
        assert again.output == (
            "Imported list.csv: 1 added, 0 updated, 1200 unchanged, 0 kept unsubscribed or "
            "bounced.\n"
        )
    else:
        assert len(result.stderr.splitlines()) == 1  # nothing imported: the cause says all


def test_export_to_stdout_and_to_an_unwritable_place(cli, folder):
    cli("subscribers", "add", "ana@example.com")
    result = cli("subscribers", "export", "-")
    lines = result.stdout.splitlines()
    # Standard output holds the CSV and nothing else; the summary goes to stderr.
    assert lines[0].startswith("email,name,first_name,last_name,status,") and len(lines) == 2
    assert lines[1].startswith("ana@example.com,,,,active,20")
    assert result.stderr == "Exported 1 subscriber(s) to -.\n"
    result = cli("subscribers", "export", str(folder / "missing" / "out.csv"))
    assert result.exit_code == 1 and "cannot be written" in result.stderr
    assert not list(folder.glob("missing*"))


def test_removing_twice_says_so(cli):
    cli("subscribers", "add", "ana@example.com")
    cli("subscribers", "remove", "ana@example.com")
    result = cli("subscribers", "remove", "ana@example.com")
    assert result.exit_code == 1
    assert "ana@example.com: is unsubscribed already; nothing to do" in result.stderr


def test_erase_with_nobody_to_answer_erases_nothing_and_says_to_add_yes(cli):
    assert cli("subscribers", "add", "ana@example.com").exit_code == 0
    result = cli("subscribers", "erase", "ana@example.com")  # no terminal: stdin is empty
    assert result.exit_code == 1
    assert "no answer to 'Erase all data about ana@example.com? This cannot be undone'" in (
        result.stderr
    )
    assert "add --yes" in result.stderr and "Aborted" not in result.output
    assert "ana@example.com" in cli("subscribers", "list").output
