"""Issue + config → a prepared issue: Jinja2 → MJML → HTML → inlined CSS, and a
plain-text part from the issue's own structure. This runs once per issue;
per-recipient work is only `PreparedIssue.fill`.
"""

from __future__ import annotations

import functools
import html
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from mjml import mjml2html

from newsletter.compose import cache, content, inline, slots
from newsletter.compose.issue import Issue
from newsletter.config import Config
from newsletter.errors import NewsletterError, shown
from newsletter.links import Links

HTML_TEMPLATE = "issue.mjml.j2"
TEXT_TEMPLATE = "issue.txt.j2"
BUILTIN_TEMPLATES = Path(__file__).parent.parent / "defaults" / "templates"


class TemplateError(NewsletterError):
    """A template is missing, does not compile, or fails while rendering."""


@dataclass(frozen=True)
class Filled:
    html: str
    text: str


@dataclass(frozen=True)
class PreparedIssue:
    slug: str
    subject: str
    html: slots.SlotTemplate
    text: slots.SlotTemplate
    fallback_name: str

    def fill(self, *, name: str | None, unsubscribe_url: str, web_url: str) -> Filled:
        """The two bodies for one recipient: the cheap per-recipient step."""
        return self.fill_values(
            {
                "name": name or self.fallback_name,
                "full_name": name or self.fallback_name,
                "unsubscribe_url": unsubscribe_url,
                "web_url": web_url,
            }
        )

    def fill_values(self, values: Mapping[str, str]) -> Filled:
        """The two bodies with each slot's plain-text value (escaped here for HTML)."""
        escaped = {key: html.escape(value) for key, value in values.items()}
        return Filled(html=self.html.fill(escaped), text=self.text.fill(values))


def public_fill(prepared: PreparedIssue, config: Config) -> Filled:
    """The issue with no reader's data in it: for previews, checks and the web archive.
    Its unsubscribe link, having no token, leads to a page that explains where the
    working one is."""
    links = Links(config.newsletter.base_url)
    return prepared.fill(
        name=config.newsletter.greeting_fallback,
        unsubscribe_url=links.public_unsubscribe(),
        web_url=links.web(prepared.slug),
    )


def subject_of(issue: Issue, config: Config) -> str:
    return issue.meta.subject or derived_subject(config.newsletter.name, issue.meta.title)


def derived_subject(name: str, title: str) -> str:
    """'What Do B2B Marketers Do Now? B2B Flip-flop', 'The Weekly: B2B Flip-flop'."""
    joiner = " " if name[-1] in "?!:." else ": "
    return f"{name}{joiner}{title}"


def prepare(issue: Issue, config: Config, cached: bool = False) -> PreparedIssue:
    """The issue rendered once for every reader. `cached`: with compiled templates and
    the inlined page from (and into) the folder's cache, for `check` and `preview`;
    a send renders afresh."""
    env = environment(config.root, cached)
    prefix = slots.new_prefix()
    view = issue_view(issue, config)
    mjml_source = render_template(
        env,
        HTML_TEMPLATE,
        view,
        config,
        lambda n: Markup(slots.marker(prefix, n)),  # noqa: S704 (fixed ASCII)
    )
    text = render_template(env, TEXT_TEMPLATE, view, config, lambda n: slots.marker(prefix, n))
    page = compile_mjml(mjml_source)
    page = inline.cached(page, prefix, config.root) if cached else inline.inline_css(page)
    return cut(issue.slug, view["subject"], page, text, prefix, config.newsletter)


def cut(slug: str, subject: str, html: str, text: str, prefix: str, newsletter) -> PreparedIssue:
    """Rendered bodies, cut at their slot markers: what every kind of message keeps."""
    return PreparedIssue(
        slug=slug,
        subject=subject,
        html=slots.SlotTemplate.parse(html.rstrip("\n") + "\n", prefix),
        text=slots.SlotTemplate.parse(text.strip() + "\n", prefix),
        fallback_name=newsletter.greeting_fallback,
    )


@functools.lru_cache(maxsize=8)
def environment(root: Path, cached: bool = False) -> jinja2.Environment:
    """The editor's templates/ first; any template they have not copied comes built in.

    Cached per folder: compiling the templates is most of a render's cost, and
    Jinja's auto_reload still picks up a template edited since. `cached`: compiled
    templates are also kept in the folder's cache, for the next process."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(root / "templates"),
                jinja2.FileSystemLoader(BUILTIN_TEMPLATES),
            ]
        ),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("mjml.j2", "html.j2"),
            disabled_extensions=("txt.j2",),
            default=True,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # The settings above are compiled into the templates: this file is in the key.
        bytecode_cache=cache.TemplateCache(root, _compiled_by()) if cached else None,
    )
    env.filters["wrap"] = content.reflow
    return env


@functools.cache
def _compiled_by() -> str:
    return cache.fingerprint(jinja2.__version__, Path(__file__))


def issue_view(issue: Issue, config: Config) -> dict[str, Any]:
    """What every issue template sees as `issue`: the email, its text part and the
    archive's web page are all built from this one view."""
    meta = issue.meta
    on_this_date = meta.on_this_date
    song = meta.theme_song
    return {
        "subject": subject_of(issue, config),
        "preheader": meta.preheader or "",
        "title": meta.title,
        "date": meta.date,
        "slug": issue.slug,
        "on_this_date": on_this_date
        and {
            "year": on_this_date.year,
            "body": content.markdown_block(on_this_date.text),
            "link": on_this_date.link,
        },
        "theme_song": song
        and {
            "title": song.title,
            "artist": song.artist,
            "url": song.url,
            "note": content.markdown_block(song.note) if song.note else None,
        },
        "quotes": [content.quote(q.text, q.author, q.source) for q in meta.quotes],
        "intro": issue.body.intro,
        "articles": issue.body.articles,
        "closing": content.markdown_block(meta.closing) if meta.closing else None,
    }


def render_template(
    env: jinja2.Environment, name: str, view: dict[str, Any], config: Config, slot
) -> str:
    """One template with the issue's view; any failure is a TemplateError naming the
    template file and line."""
    try:
        template = env.get_template(name)
        return template.render(
            issue=view,
            newsletter=config.newsletter,
            sender=config.sender,
            signature=config.signature,
            slot=slot,
        )
    except jinja2.TemplateSyntaxError as exc:
        where = f"{shown(exc.filename or exc.name or name)}:{exc.lineno}"
        raise TemplateError(
            f"{where}: template syntax error: {exc.message}; fix the template, or delete it "
            "to use the built-in one"
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"templates/{exc.name}: template not found; restore it, or remove the include "
            "that names it"
        ) from None
    except UnicodeDecodeError:
        raise TemplateError(
            "templates/: a template is not UTF-8 text; save the templates as UTF-8"
        ) from None
    except OSError as exc:
        raise TemplateError(
            f"{shown(exc.filename or 'templates/')}: cannot be read ({exc.strerror})"
        ) from None
    except Exception as exc:  # templates are the editor's code: any failure is theirs to fix
        raise TemplateError(
            f"{_failing_line(exc, name)}: template error: {exc}; fix the template"
        ) from None


def _failing_line(exc: BaseException, fallback: str) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    if not frames:
        return fallback
    return f"{shown(frames[-1].filename)}:{frames[-1].lineno}"


def compile_mjml(source: str) -> str:
    try:
        return mjml2html(source, disable_comments=True)
    except ValueError as exc:
        raise TemplateError(
            f"templates/{HTML_TEMPLATE}: MJML could not compile the rendered page ({exc}); "
            "check the mj- tags in your templates"
        ) from None
