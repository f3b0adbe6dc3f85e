"""`newsletter check`: what would go wrong in readers' inboxes, found before sending.

Errors block a send (a missing unsubscribe link, a link that cannot work, a
leftover TODO); warnings are worth a look (an image without alt text).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import lxml.html

from newsletter.compose.configcheck import concerns
from newsletter.compose.issue import Issue, IssueError, issue_files, load_issue
from newsletter.compose.render import Filled, PreparedIssue, prepare, public_fill
from newsletter.config import Config
from newsletter.errors import shown

GMAIL_CLIP_BYTES = 102 * 1024
# The key a front-matter line sets ("  title: …", "- text: …"), to name it in a finding.
_KEY = re.compile(r"^\s*(?:-\s+)?([A-Za-z_][\w-]*):")
_TODO = re.compile(r"\bTODO\b")
# Markdown shows these links as their raw text rather than link to them, so they never
# reach the page: found in the source. `![…](…)` is an image, `[…](…)` and `<…>` links.
_REFUSED_LINK = re.compile(
    r"(!?)\[[^\]]*\]\(\s*<?((?:javascript|vbscript|data):(?:[^()\s>]|\([^()\s]*\))*)"
    r"|<((?:javascript|vbscript|data):[^>\s]*)>",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.level}: {self.message}"


@dataclass(frozen=True)
class Checked:
    """What `newsletter check` found in each file it was given, in order."""

    results: tuple[tuple[Path, tuple[Finding, ...]], ...]
    settings: tuple[Finding, ...] = ()  # about newsletter.toml itself, reported first

    def count(self, level: str) -> int:
        found = [f for _, findings in self.results for f in findings] + list(self.settings)
        return sum(f.level == level for f in found)

    def failed(self, strict: bool = False) -> bool:
        """Errors block a send; with `strict`, so do warnings."""
        return bool(self.count("error") or (strict and self.count("warning")))

    def report(self) -> list[str]:
        """One line per finding (or 'FILE: ok'), then the totals."""
        lines = [str(f) for f in self.settings]
        for path, findings in self.results:
            lines += [str(f) for f in findings] or [f"{shown(path)}: ok"]
        errors, warnings = self.count("error"), self.count("warning")
        lines.append(
            f"Checked {len(self.results)} issue(s): {errors} error(s), {warnings} warning(s)."
        )
        return lines


def check_files(paths: list[Path] | None, config: Config) -> Checked:
    """Check the given issue files, or with none given, every issue in issues/."""
    paths = paths or issue_files(config.root)
    results = tuple((path, tuple(check_file(path, config))) for path in paths)
    return Checked(results, tuple(settings_findings(config)))


def settings_findings(config: Config) -> list[Finding]:
    """The settings' own problems (a login without a password, a base_url without https)."""
    return [Finding(c.level, c.where, c.message) for c in concerns(config)]


def check_file(path, config: Config) -> list[Finding]:
    """Validate, render and inspect one issue file."""
    try:
        issue = load_issue(path)
    except IssueError as exc:
        findings = [Finding("error", *_split_where(line)) for line in exc.lines()]
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        seen = {f.where for f in findings}
        findings += [f for f in todo_findings(str(path), text) if f.where not in seen]
    except OSError as exc:  # e.g. a folder or an unreadable file
        findings = [Finding("error", str(path), f"cannot be read ({exc.strerror})")]
    else:
        findings = inspect(issue, prepare(issue, config, cached=True), config)
    return sorted(findings, key=_line_number)


def inspect(issue: Issue, prepared: PreparedIssue, config: Config) -> list[Finding]:
    source = str(issue.path)
    filled = public_fill(prepared, config)
    findings = todo_findings(source, issue.source)
    findings += _size(source, filled.html)
    findings += _footer(source, prepared, filled, config)
    findings += _links_and_images(issue, filled.html, config.newsletter.base_url)
    findings += _empty_sections(issue)
    if issue.path.name[:10] != issue.meta.date.isoformat() and re.match(
        r"\d{4}-\d\d-\d\d", issue.path.name
    ):
        findings.append(
            Finding(
                "warning",
                f"{source}:{issue.line_of('date')}",
                f"date: is {issue.meta.date} but the file name says {issue.path.name[:10]}; "
                "make them match so the archive sorts right",
            )
        )
    return findings


def todo_findings(source: str, text: str) -> list[Finding]:
    findings = []
    fences = 0
    top = ""  # the front-matter key that indented lines belong to
    for number, line in enumerate(text.splitlines(), 1):
        fences += line.rstrip() == "---" and fences < 2
        in_front_matter = fences == 1
        if in_front_matter and line.lstrip().startswith("#"):
            continue  # a YAML comment: guidance, not content
        key = _KEY.match(line) if in_front_matter else None
        if key and not line[:1].isspace():
            top = key.group(1)
        if _TODO.search(line):
            name = key.group(1) if key else ""
            name = f"{top}.{name}" if name and line[:1].isspace() and top else name
            field = f"{name}: " if name else ""
            findings.append(
                Finding(
                    "error",
                    f"{source}:{number}",
                    f"{field}still has a TODO placeholder; replace it with your text, or delete it",
                )
            )
    return findings


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
    address = " ".join(config.newsletter.postal_address.split())
    visible = " ".join(lxml.html.fromstring(filled.html).text_content().split())
    for part, body in (("HTML", visible), ("plain-text", " ".join(filled.text.split()))):
        if address not in body:
            findings.append(
                Finding(
                    "error",
                    source,
                    f"the {part} part does not show the postal address; put "
                    "{{ newsletter.postal_address }} back in the footer template",
                )
            )
    return findings


def _links_and_images(issue: Issue, page: str, base_url: str) -> list[Finding]:
    """Links and images from the articles (with their lines), those Markdown refused
    to make links of, then any others the rendered page has (front-matter fields,
    templates). Links to the newsletter's own site are the configuration's to judge."""
    source = str(issue.path)
    found: list[tuple[str, str, str, str]] = []
    for link in issue.body.links:
        found.append((link.kind, link.url, link.alt, f"{source}:{issue.body_line + link.line - 1}"))
    seen = {(kind, url) for kind, url, _, _ in found}
    for kind, url, number in _refused_in_source(issue):
        if (kind, url) not in seen:
            seen.add((kind, url))
            found.append((kind, url, "", f"{source}:{number}"))
    tree = lxml.html.fromstring(page)
    for kind, tag, attribute in (("link", "a", "href"), ("image", "img", "src")):
        for element in tree.iter(tag):
            url = (element.get(attribute) or "").strip()
            if (kind, url) not in seen:
                seen.add((kind, url))
                line = _line_of(issue.source, url)
                found.append((kind, url, element.get("alt") or "", f"{source}:{line}"))
    own = base_url.rstrip("/") + "/"
    return [
        finding
        for kind, url, alt, where in found
        for finding in _judge(kind, url, alt, where, own_site=(url + "/").startswith(own))
    ]


def _refused_in_source(issue: Issue):
    """(kind, url, line) of each script or data: link written in the body."""
    lines = issue.source.splitlines()[issue.body_line - 1 :]
    for number, line in enumerate(lines, issue.body_line):
        for match in _REFUSED_LINK.finditer(line):
            yield ("image" if match.group(1) else "link"), match.group(2) or match.group(3), number


def _judge(kind: str, url: str, alt: str, where: str, own_site: bool = False) -> list[Finding]:
    refused = _refused(kind, url)
    if refused:
        return [Finding("error", where, refused)]
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    unreachable = "" if own_site else _unreachable_host(parts.hostname or "")
    if unreachable and scheme in ("http", "https"):
        return [
            Finding(
                "error",
                where,
                f"{kind} {_short(url)!r} points at {unreachable}, which readers cannot reach; "
                "use its public https:// address",
            )
        ]
    if kind == "link" and (scheme not in ("http", "https", "mailto") or url in ("http:", "https:")):
        return [
            Finding(
                "error",
                where,
                f"link {url!r} is not a web or mailto link, so it cannot work in an email; "
                "use a full https:// address",
            )
        ]
    findings = []
    if kind == "image" and scheme not in ("http", "https"):
        findings.append(
            Finding(
                "error",
                where,
                f"image {url!r} is not a full web address, so readers cannot load it; "
                "use https://…",
            )
        )
    if kind == "image" and not alt.strip():
        findings.append(
            Finding(
                "warning",
                where,
                f"image {url!r} has no alt text, so screen readers and image-blocking "
                "clients show nothing; write ![what it shows](url)",
            )
        )
    return findings


def _refused(kind: str, url: str) -> str:
    """Why mail clients will not follow this link or show this image, if they will not."""
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme in ("javascript", "vbscript"):
        return (
            f"link {_short(url)!r} runs a script, which mail clients block and spam filters "
            "count against you; link to a web page (https://…) instead"
        )
    if scheme == "data":
        return (
            f"{kind} {_short(url)!r} is a data: URL, which mail clients block or strip; put "
            "the content on the web and use its https:// address"
        )
    return ""


def _unreachable_host(host: str) -> str:
    """'localhost (this computer)' and the like for hosts only the editor can reach."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} (this computer)"
    if host.endswith(".local"):
        return f"{host} (a name on your local network)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ""
    if address.is_loopback or address.is_unspecified:
        return f"{host} (this computer)"
    return ""


def _short(url: str) -> str:
    """A URL as the editor can recognise it in one line (data: URLs run to kilobytes)."""
    return url if len(url) <= 60 else url[:57] + "…"


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
                f"{source}:{issue.line_of('closing')}",
                "closing: is empty; write a closing note, or delete the field",
            )
        )
    return findings


def _line_number(finding: Finding) -> int:
    match = re.search(r":(\d+)$", finding.where)
    return int(match.group(1)) if match else 0


def _line_of(text: str, needle: str) -> int:
    """Where a URL from a front-matter field is written (1 when it is not)."""
    index = text.find(needle) if needle else -1
    return text.count("\n", 0, index) + 1 if index >= 0 else 1


def _split_where(line: str) -> tuple[str, str]:
    """'FILE:LINE: message' → ('FILE:LINE', 'message')."""
    match = re.match(r"^(.*?:\d+|[^:]+): (.*)$", line)
    return (match.group(1), match.group(2)) if match else ("", line)
