"""axe-core (installed by `make test` into .venv/axe) run on a page open in Playwright."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

AXE = Path(__file__).resolve().parent.parent / ".venv/axe/node_modules/axe-core/axe.min.js"


def violations(page) -> list[str]:
    """One line per accessibility violation on the page: rule, impact, what it says."""
    if not AXE.exists():
        reason = f"axe-core not found at {AXE} (make test installs it with npm)"
        if os.environ.get("NEWSLETTER_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    # Evaluated, not added as a <script>: the site's Content-Security-Policy (rightly)
    # refuses inline scripts, and a page must be checked with its real headers.
    page.evaluate(AXE.read_text(encoding="utf-8"))
    found = page.evaluate(
        "async () => (await axe.run(document)).violations"
        ".map(v => `${v.id} (${v.impact}): ${v.help} [${v.nodes.length}]`)"
    )
    return list(found)
