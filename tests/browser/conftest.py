"""Fixtures for the browser tests: one JupyterLab server and one Chromium for the whole run.

Without Chromium the tests are skipped with a message naming the package to install, which
pytest prints in its summary (``make test`` runs pytest with ``-rs``): never a silent pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from labdriver import CHROMIUM_PACKAGE_HINT, JupyterLabServer, find_chromium, launch_chromium

ROOT = Path(__file__).resolve().parents[2]
# Where the browser run leaves what a reviewer looks at (not committed: see .gitignore).
ARTIFACTS = Path(os.environ.get("DIFFUSION_EDU_BROWSER_ARTIFACTS", ROOT / "browser-artifacts"))


@pytest.fixture(scope="session")
def browser():
    if find_chromium() is None:
        pytest.skip(CHROMIUM_PACKAGE_HINT)
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is a dev dependency: pip install -e '.[dev]'"
    )
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def lab(browser):
    with JupyterLabServer(quick=True) as server:
        yield server


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
