"""Where returned mail is read from: files (one message each, or an mbox), standard
input, a local Maildir, or an IMAP mailbox over TLS. Each source yields items whose
`done()` marks the message processed (Maildir and IMAP: moved to `move_to`, or
marked read), called only after what it caused is committed."""

from __future__ import annotations

import mailbox
import ssl
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from newsletter.config import BouncesSection
from newsletter.errors import NewsletterError, shown


class MailboxError(NewsletterError):
    """A bounce mailbox or message file cannot be read."""


@dataclass(frozen=True)
class Item:
    label: str
    data: bytes
    done: Callable[[], None] = lambda: None


def from_files(paths: list[Path]) -> Iterator[Item]:
    """Each file: one message, or an mbox (its first line starts with "From ")."""
    for path in paths:
        if not path.is_file():
            raise MailboxError(f"{shown(path)}: no such file; give a message file or an mbox")
    for path in paths:
        yield from _messages(shown(path), path.read_bytes(), path)


def from_stdin(data: bytes) -> Iterator[Item]:
    if not data.startswith(b"From "):
        yield Item("stdin", data)
        return
    with tempfile.TemporaryDirectory() as folder:  # the stdlib reads an mbox from a path
        path = Path(folder) / "stdin.mbox"
        path.write_bytes(data)
        yield from _messages("stdin", data, path)


def _messages(label: str, data: bytes, path: Path) -> Iterator[Item]:
    if not data.startswith(b"From "):
        yield Item(label, data)
        return
    box = mailbox.mbox(path, create=False)
    try:
        for number, key in enumerate(box.keys(), 1):
            yield Item(f"{label}#{number}", box.get_bytes(key))
    finally:
        box.close()


def from_maildir(settings: BouncesSection, root: Path) -> Iterator[Item]:
    """Unread messages of a Maildir (new/, and cur/ without the Seen flag)."""
    path = root / str(settings.maildir)
    if not (path / "new").is_dir() or not (path / "cur").is_dir():
        raise MailboxError(
            f"bounces.maildir: {shown(path)} is not a Maildir (no new/ and cur/ inside); "
            "point it at the folder your mail server delivers the bounce address to"
        )
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(box.keys()):
        message = box.get_message(key)
        if "S" in message.get_flags():
            continue
        yield Item(f"maildir:{key}", box.get_bytes(key), _maildir_done(box, key, settings.move_to))


def _maildir_done(box: mailbox.Maildir, key: str, move_to: str | None) -> Callable[[], None]:
    def done() -> None:
        message = box.get_message(key)
        message.set_subdir("cur")
        message.add_flag("S")
        if move_to:
            folder = box.get_folder(move_to) if move_to in box.list_folders() else None
            (folder or box.add_folder(move_to)).add(message)
            box.remove(key)
        else:
            box[key] = message

    return done


def from_imap(settings: BouncesSection) -> Iterator[Item]:
    """Unread messages of an IMAP folder, over TLS (port 993)."""
    from imap_tools import AND, MailBox, MailboxLoginError, MailMessageFlags

    password = settings.password.get_secret_value() if settings.password else None
    if not settings.imap_user or not password:
        raise MailboxError(
            "bounces.imap_user or bounces.password: is not set; set imap_user in [bounces] and "
            "the password in NEWSLETTER_BOUNCES_PASSWORD or secrets.toml"
        )
    context = ssl.create_default_context(cafile=settings.imap_ca_file)
    try:
        box = MailBox(str(settings.imap_host), settings.imap_port, ssl_context=context)
        box.login(settings.imap_user, password, initial_folder=settings.imap_folder)
    except MailboxLoginError:
        raise MailboxError(
            f"bounces: {settings.imap_host} refused the login of {settings.imap_user}; "
            "check imap_user and NEWSLETTER_BOUNCES_PASSWORD"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise MailboxError(
            f"bounces.imap_host: cannot reach {settings.imap_host}:{settings.imap_port} over "
            f"TLS ({exc}); check the host, the port (993) and imap_ca_file"
        ) from None
    try:
        if settings.move_to and not box.folder.exists(settings.move_to):
            box.folder.create(settings.move_to)
        messages = box.fetch(AND(seen=False), mark_seen=False, bulk=False)
        for message in list(messages):
            uid = str(message.uid)

            def done(uid: str = uid) -> None:
                if settings.move_to:
                    box.move(uid, settings.move_to)
                else:
                    box.flag(uid, MailMessageFlags.SEEN, True)

            yield Item(f"imap:{uid}", _as_bytes(message.obj), done)
    finally:
        box.logout()


def _as_bytes(message) -> bytes:
    try:
        return message.as_bytes()
    except (UnicodeError, LookupError, ValueError):
        return b""  # unreadable: reported as an empty message, and marked done


def configured(settings: BouncesSection, root: Path) -> Iterator[Item]:
    """The mailbox [bounces] names: a Maildir, or an IMAP server."""
    if settings.maildir and settings.imap_host:
        raise MailboxError(
            "bounces: both maildir and imap_host are set; keep the one your bounces arrive in"
        )
    if settings.maildir:
        return from_maildir(settings, root)
    if settings.imap_host:
        return from_imap(settings)
    raise MailboxError(
        'bounces: no mailbox to fetch from; set maildir = "…" or imap_host = "…" in '
        "[bounces] of newsletter.toml (or use 'newsletter bounces ingest FILE')"
    )
