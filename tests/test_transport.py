"""Cutting the server's bytes into whole replies (pipelined replies come together)."""

from __future__ import annotations

import pytest

from newsletter.mail.transport import reply_end


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"250 OK\r\n", 8),
        (b"250 OK\r\n354 go\r\n", 8),  # the first of two pipelined replies
        (b"250-mx\r\n250-PIPELINING\r\n250 HELP\r\n", 34),  # a multi-line reply, whole
        (b"250-mx\r\n250-PIPELINING\r\n", None),  # its last line not here yet
        (b"250 OK", None),  # a line without its end
        (b"250\r\n", 5),  # a code alone
        (b"250 bare LF\n", 12),
    ],
)
def test_a_reply_ends_after_its_last_line(data, end):
    assert reply_end(bytearray(data)) == end
