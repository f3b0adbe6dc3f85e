"""`bounces fetch` against a real IMAP server over TLS on loopback: Debian's Dovecot
(apt-get install dovecot-imapd), started for the test with a throwaway config and a
self-signed certificate. Skipped where Dovecot is not installed or we are not root."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from smtp_server import free_port
from test_bounces import fill, sent, set_bounces_threshold, state

PASSWORD = "imap-test-password"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
auth_mechanisms = plain
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


@pytest.fixture
def dovecot():
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(binary).exists() or os.geteuid() != 0 or not shutil.which("openssl"):
        pytest.skip("needs Dovecot (apt-get install dovecot-imapd), openssl and root")
    try:
        user = pwd.getpwnam("dovecot")
    except KeyError:
        pytest.skip("the dovecot user is missing (install dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="nl-dovecot-"))
    root.chmod(0o755)  # the mail process runs as the dovecot user
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", root / "key.pem", "-out", root / "cert.pem", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    (root / "users").write_text(f"bounces:{{PLAIN}}{PASSWORD}\n")
    for name in ("run", "state", "home"):
        (root / name).mkdir()
    os.chown(root / "home", user.pw_uid, user.pw_gid)
    port = free_port()
    conf = root / "dovecot.conf"
    conf.write_text(CONFIG.format(root=root, uid=user.pw_uid, gid=user.pw_gid, port=port))
    server = subprocess.Popen([binary, "-F", "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        _wait_for(port, server)
        yield port, root / "cert.pem"
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"dovecot exited: {server.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("dovecot did not start listening within 10 s")


def mailbox(port: int, cert: Path):
    from imap_tools import MailBox

    context = ssl.create_default_context(cafile=str(cert))
    return MailBox("127.0.0.1", port, ssl_context=context).login("bounces", PASSWORD)


def use_imap(folder: Path, port: int, cert: Path, **more) -> None:
    set_bounces_threshold(
        folder,
        imap_host='"127.0.0.1"',
        imap_port=port,
        imap_user='"bounces"',
        imap_ca_file=f'"{cert}"',
        **more,
    )


imap_sent = sent  # an issue sent to four readers, [bounces] address set (test_bounces)


def test_fetch_over_imap_reads_unread_mail_and_marks_it_read(
    cli, folder, imap_sent, dovecot, tmp_path, monkeypatch
):
    port, cert = dovecot
    use_imap(folder, port, cert)
    monkeypatch.setenv("NEWSLETTER_BOUNCES_PASSWORD", PASSWORD)
    with mailbox(port, cert) as box:
        box.append(fill(tmp_path, "postfix-hard.eml", imap_sent["r1@example.com"]).read_bytes())
        box.append(fill(tmp_path, "reply.eml", imap_sent["r2@example.com"]).read_bytes())
    result = cli("bounces", "fetch")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "imap:1: hard bounce (5.1.1) for r1@example.com: bounced (score 1.0 ≥ 1.0)",
        "imap:2: not a bounce or complaint (a message from ana@example.com): nobody changed",
        "2 message(s) read.",
    ]
    assert state(folder)["r1@example.com"][0] == "bounced"
    with mailbox(port, cert) as box:
        assert all("\\Seen" in m.flags for m in box.fetch(mark_seen=False))
    assert cli("bounces", "fetch").output == "0 message(s) read.\n"


def test_fetch_over_imap_can_move_processed_mail(
    cli, folder, imap_sent, dovecot, tmp_path, monkeypatch
):
    port, cert = dovecot
    use_imap(folder, port, cert, move_to='"Processed"')
    monkeypatch.setenv("NEWSLETTER_BOUNCES_PASSWORD", PASSWORD)
    with mailbox(port, cert) as box:
        box.append(fill(tmp_path, "vacation.eml", imap_sent["r3@example.com"]).read_bytes())
    result = cli("bounces", "fetch")
    assert result.exit_code == 0, result.output
    with mailbox(port, cert) as box:
        assert len(list(box.fetch(mark_seen=False))) == 0
        box.folder.set("Processed")
        assert len(list(box.fetch(mark_seen=False))) == 1


def test_wrong_imap_password_is_one_line(cli, folder, imap_sent, dovecot, monkeypatch):
    port, cert = dovecot
    use_imap(folder, port, cert)
    monkeypatch.setenv("NEWSLETTER_BOUNCES_PASSWORD", "wrong")
    result = cli("bounces", "fetch")
    assert result.exit_code == 1
    assert result.output == (
        "error: bounces: 127.0.0.1 refused the login of bounces; check imap_user and "
        "NEWSLETTER_BOUNCES_PASSWORD\n"
    )
