"""`newsletter check`: what would go wrong in readers' inboxes, found before sending.

Errors block a send (a missing unsubscribe link, a link that cannot work, a
leftover TODO); warnings are worth a look (an image without alt text).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import lxml.html

from newsletter.config import Config
from newsletter.issue import Issue, IssueError, load_issue
from newsletter.render import Filled, PreparedIssue, prepare

GMAIL_CLIP_BYTES = 102 * 1024
_TODO = re.compile(r"\bTODO\b")


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.level}: {self.message}"


def sample_fill(prepared: PreparedIssue, config: Config) -> Filled:
    """The issue as a reader without a name would get it, for previews and checks."""
    base = config.newsletter.base_url.rstrip("/")
    return prepared.fill(
        name=None,
        unsubscribe_url=f"{base}/unsubscribe/preview",
        web_url=f"{base}/archive/{prepared.slug}",
    )


def check_file(path, config: Config) -> list[Finding]:
    """Validate, render and inspect one issue file."""
    try:
        issue = load_issue(path)
    except IssueError as exc:
        findings = [Finding("error", *_split_where(line)) for line in exc.lines()]
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        seen = {f.where for f in findings}
        findings += [f for f in todo_findings(str(path), text) if f.where not in seen]
    else:
        findings = inspect(issue, prepare(issue, config), config)
    return sorted(findings, key=_line_number)


def inspect(issue: Issue, prepared: PreparedIssue, config: Config) -> list[Finding]:
    source = str(issue.path)
    filled = sample_fill(prepared, config)
    findings = todo_findings(source, issue.source)
    findings += _size(source, filled.html)
    findings += _footer(source, prepared, filled, config)
    findings += _links_and_images(issue, filled.html)
    findings += _empty_sections(issue)
    if issue.path.name[:10] != issue.meta.date.isoformat() and re.match(
        r"\d{4}-\d\d-\d\d", issue.path.name
    ):
        findings.append(
            Finding(
                "warning",
                f"{source}:{_line_of(issue.source, 'date:')}",
                f"date: is {issue.meta.date} but the file name says {issue.path.name[:10]}; "
                "make them match so the archive sorts right",
            )
        )
    return findings


def todo_findings(source: str, text: str) -> list[Finding]:
    return [
        Finding(
            "error",
            f"{source}:{number}",
            "still has a TODO placeholder; replace it with your text, or delete the section",
        )
        for number, line in enumerate(text.splitlines(), 1)
        if _TODO.search(line) and not line.lstrip().startswith("#")
    ]


def _size(source: str, page: str) -> list[Finding]:
    size = len(page.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        return [
            Finding(
                "error",
                source,
                f"the HTML is {size / 1024:.0f} KB, over Gmail's 102 KB limit: Gmail would clip "
                "it and hide the footer; shorten the issue or link out to longer pieces",
            )
        ]
    if size > GMAIL_CLIP_BYTES * 0.85:
        return [
            Finding(
                "warning",
                source,
                f"the HTML is {size / 1024:.0f} KB, close to Gmail's 102 KB clipping limit; "
                "consider trimming",
            )
        ]
    return []


def _footer(source: str, prepared: PreparedIssue, filled: Filled, config: Config) -> list[Finding]:
    findings = []
    for part, template in (("HTML", prepared.html), ("plain-text", prepared.text)):
        if "unsubscribe_url" not in template.names:
            findings.append(
                Finding(
                    "error",
                    source,
                    f"the {part} part has no unsubscribe link; put "
                    "{{ slot('unsubscribe_url') }} back in the footer template",
                )
            )
    address = config.newsletter.postal_address
    for part, body, wanted in (
        ("HTML", filled.html, html.escape(address)),
        ("plain-text", " ".join(filled.text.split()), address),
    ):
        if wanted not in body:
            findings.append(
                Finding(
                    "error",
                    source,
                    f"the {part} part does not show the postal address; put "
                    "{{ newsletter.postal_address }} back in the footer template",
                )
            )
    return findings


def _links_and_images(issue: Issue, page: str) -> list[Finding]:
    findings = []
    source = str(issue.path)
    tree = lxml.html.fromstring(page)
    for anchor in tree.iter("a"):
        href = (anchor.get("href") or "").strip()
        if urlsplit(href).scheme not in ("http", "https", "mailto") or href in ("http:", "https:"):
            findings.append(
                Finding(
                    "error",
                    f"{source}:{_line_of(issue.source, href)}",
                    f"link {href!r} is not a web or mailto link, so it cannot work in an email; "
                    "use a full https:// address",
                )
            )
    for image in tree.iter("img"):
        src = image.get("src") or ""
        where = f"{source}:{_line_of(issue.source, src)}"
        if urlsplit(src).scheme not in ("http", "https"):
            findings.append(
                Finding(
                    "error",
                    where,
                    f"image {src!r} is not a full web address, so readers cannot load it; "
                    "use https://…",
                )
            )
        if not (image.get("alt") or "").strip():
            findings.append(
                Finding(
                    "warning",
                    where,
                    f"image {src!r} has no alt text, so screen readers and image-blocking "
                    "clients show nothing; write ![what it shows](url)",
                )
            )
    return findings


def _empty_sections(issue: Issue) -> list[Finding]:
    source = str(issue.path)
    findings = [
        Finding(
            "warning",
            f"{source}:{issue.body_line + article.line - 1}",
            f"article {article.heading!r} has no text; write it, or delete the heading",
        )
        for article in issue.body.articles
        if article.is_empty
    ]
    if issue.meta.closing is not None and not issue.meta.closing.strip():
        findings.append(
            Finding(
                "warning",
                f"{source}:{_line_of(issue.source, 'closing:')}",
                "closing: is empty; write a closing note, or delete the field",
            )
        )
    return findings


def _line_number(finding: Finding) -> int:
    match = re.search(r":(\d+)$", finding.where)
    return int(match.group(1)) if match else 0


def _line_of(text: str, needle: str) -> int:
    index = text.find(needle) if needle else -1
    return text.count("\n", 0, index) + 1 if index >= 0 else 1


def _split_where(line: str) -> tuple[str, str]:
    """'FILE:LINE: message' → ('FILE:LINE', 'message')."""
    match = re.match(r"^(.*?:\d+|[^:]+): (.*)$", line)
    return (match.group(1), match.group(2)) if match else ("", line)
