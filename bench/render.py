"""Render benchmark: one whole issue (load, validate, render, inline) and the
per-recipient slot fill, each a median over repeated runs, with baselines
measured in the same run so the ratios hold on a noisy machine.

Targets on the project's 2-core machine: a whole issue under 100 ms; a slot
fill under 50 µs.  Run: make bench   (or .venv/bin/python bench/render.py)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from mjml import mjml2html

from newsletter.compose import inline, render
from newsletter.compose.issue import load_issue
from newsletter.config import load_config

ROOT = Path(__file__).resolve().parent.parent
ISSUE = ROOT / "issues" / "2026-11-24-survival-of-the-fittest-funnel.md"


def median_seconds(fn, runs: int, inner: int = 1) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="repeats of the whole issue")
    args = parser.parse_args()

    config = load_config(ROOT / "newsletter.toml", environ={})
    first = time.perf_counter()
    prepared = render.prepare(load_issue(ISSUE), config)
    cold = time.perf_counter() - first

    def whole_issue():
        render.prepare(load_issue(ISSUE), config)

    issue = load_issue(ISSUE)
    env = render.environment(config.root)
    view = render.issue_view(issue, config)
    mjml_source = render.render_template(env, render.HTML_TEMPLATE, view, config, lambda n: "")
    page = mjml2html(mjml_source)

    stages = {
        "load + validate": lambda: load_issue(ISSUE),
        "Jinja2 → MJML": lambda: render.render_template(
            env, render.HTML_TEMPLATE, view, config, lambda n: ""
        ),
        "MJML → HTML": lambda: mjml2html(mjml_source),
        "premailer inline": lambda: inline.inline_css(page),
    }
    total = median_seconds(whole_issue, args.runs)

    unsub = (
        "https://news.example.com/unsubscribe?token=eyJzIjoxMjM0NX0.Z3r8aQ.abcdefghijklmnopqrstuv"
    )
    web = "https://news.example.com/archive/2026-11-24-survival-of-the-fittest-funnel"

    def fill():
        prepared.fill(name="Ana Souza", unsubscribe_url=unsub, web_url=web)

    # Baseline: the obvious hand-written fill, str.replace per marker on both parts.
    html_src = prepared.html.fill({n: f"{{{n}}}" for n in prepared.html.names})
    text_src = prepared.text.fill({n: f"{{{n}}}" for n in prepared.text.names})

    def replace_fill():
        for source in (html_src, text_src):
            source.replace("{name}", "Ana Souza").replace("{unsubscribe_url}", unsub).replace(
                "{web_url}", web
            )

    fill_s = median_seconds(fill, 200, inner=200)
    replace_s = median_seconds(replace_fill, 200, inner=200)

    size = len(prepared.fill(name="Ana", unsubscribe_url=unsub, web_url=web).html.encode())
    print(f"issue: {ISSUE.name} ({size / 1024:.1f} KB of HTML)")
    print(f"first render in this process (imports warm, caches cold): {cold * 1000:.1f} ms")
    print(f"whole issue, median of {args.runs}: {total * 1000:.1f} ms  (target < 100 ms)")
    for name, fn in stages.items():
        print(f"  {name:<18} {median_seconds(fn, args.runs) * 1000:7.2f} ms")
    print(f"slot fill (HTML + text), median: {fill_s * 1e6:.1f} µs  (target < 50 µs)")
    print(f"  baseline str.replace fill:      {replace_s * 1e6:.1f} µs")
    print(f"  ratio fill / str.replace:       {fill_s / replace_s:.2f}x (lower is better)")
    print(f"  ratio fill / whole-issue render: 1/{total / fill_s:,.0f}")


if __name__ == "__main__":
    main()
