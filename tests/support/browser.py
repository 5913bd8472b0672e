"""Browser fixtures (a pytest plugin, registered once in tests/conftest.py so one Chromium serves every
test folder): the system headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

Nothing here downloads a browser: Playwright launches ``/usr/bin/chromium`` through
``executable_path``. When Chromium or axe-core is missing, ``deploy/browser/install.sh`` installs it
(``make setup`` runs it too). Reusable for any page the module produces:

- ``browser``: one Chromium for the session;
- ``page``: a fresh page per test (own context); the test fails on a script error or a Content-Security-
  Policy violation in the page, and any request other than ``file:`` or ``data:`` is refused and recorded
  in ``page.blocked`` (pages must work offline); pass ``allow_network=True`` through
  ``new_page(allow_network=True)`` for a page served over http;
- ``axe``: ``axe(page)`` runs axe-core (npm, deploy/browser/package.json) in the page and returns its
  violations.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
INSTALL = REPO / "deploy" / "browser" / "install.sh"
AXE = REPO / "deploy" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
# --no-sandbox: the tests run as root here, where Chromium's sandbox cannot start (shared/notes/platform.md);
# the pages are the module's own files.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
VIEWPORT = {"width": 1280, "height": 900}


def _ensure_installed() -> None:
    if CHROMIUM.exists() and AXE.exists():
        return
    done = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0 or not CHROMIUM.exists() or not AXE.exists():
        pytest.fail(f"browser test dependencies missing; {INSTALL} said: {done.stderr.strip()[-500:]}")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _ensure_installed()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class PageProblems:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.blocked: list[str] = []


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """A factory of pages (``new_page(allow_network=False)``); see the module docstring."""
    contexts: list[tuple[Any, PageProblems]] = []

    def make(*, allow_network: bool = False) -> Any:
        context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="Europe/Berlin")
        problems = PageProblems()

        def route(route: Any) -> None:
            url = route.request.url
            if allow_network or url.startswith(("file:", "data:")):
                route.continue_()
            else:
                problems.blocked.append(url)
                route.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.errors.append(f"script error: {error}"))

        def console(message: Any) -> None:
            if message.type == "error" or "Content Security Policy" in message.text:
                problems.errors.append(f"console {message.type}: {message.text}")

        page.on("console", console)
        page.blocked = problems.blocked
        page.problems = problems
        contexts.append((context, problems))
        return page

    yield make
    errors = [error for _, problems in contexts for error in problems.errors]
    for context, _ in contexts:
        context.close()
    assert not errors, errors


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    """A fresh offline page over the system Chromium."""
    return new_page()


@pytest.fixture(scope="session")
def axe_source() -> str:
    _ensure_installed()
    return AXE.read_text(encoding="utf-8")


@pytest.fixture
def axe(axe_source: str) -> Callable[..., list[dict[str, Any]]]:
    """``axe(page, impacts=("serious", "critical"))``: axe-core's violations of those impacts in the page."""

    def run(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
        # evaluated through the DevTools protocol, which the page's CSP does not govern (an injected
        # <script> tag would be refused by it, as it should be)
        page.evaluate(f"() => {{ {axe_source}\n }}")
        page.evaluate("() => { if (!window.axe && typeof axe !== 'undefined') { window.axe = axe; } }")
        result = page.evaluate(
            "async () => JSON.stringify(await window.axe.run(document, {resultTypes: ['violations']}))"
        )
        violations = json.loads(result)["violations"]
        return [v for v in violations if v.get("impact") in impacts]

    return run


def screenshot_dir(tmp_path: Path) -> Path:
    """docs/img when UPDATE_SCREENSHOTS=1 (then review and commit them), else the test's tmp dir."""
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        target = REPO / "docs" / "img"
        target.mkdir(parents=True, exist_ok=True)
        return target
    return tmp_path
