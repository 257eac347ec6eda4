"""The real stack plus the demo page, and Debian's Chromium driven by Playwright.

The stack runs with every channel protection switched on, as a bank would run it:
the socket.io channel requires a JWT (the demo page signs one per visitor), the
REST channel a bearer token, Rasa's HTTP API its auth token, and browsers may only
connect from the demo page's origin.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops import settings, stack
from ops.stack import free_port
from tests.conftest import API_TOKEN, GENERATOR_TIMEOUT_S

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = settings.ROOT / "build" / "screenshots"
JWT_KEY = "browser-test-jwt-key-0123456789abcdef"
REST_TOKEN = "browser-test-rest-token"
# Chromium's own background traffic is refused on this closed network: switch it off.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@dataclass
class WebStack:
    generator: stack.Service
    actions: stack.Service
    rasa: stack.Service
    web: stack.Service
    rasa_url: str
    page_url: str
    db_path: Path


@pytest.fixture(scope="session")
def web_stack(tmp_path_factory, trained_model, request):
    if not (settings.ROOT / "widget" / "dist" / "lakeside-chat.js").is_file():
        pytest.fail("the widget is not built: run `make widget` (make setup does)")
    work = tmp_path_factory.mktemp("web-stack")
    gen_port, act_port, rasa_port, web_port = free_port(), free_port(), free_port(), free_port()
    db_path = work / "tracker.db"
    from assistant import bank

    bank_url = f"sqlite:///{work / 'bank.db'}"  # not the demo database in build/
    bank.seed(bank_url)
    page_url = f"http://127.0.0.1:{web_port}"
    security = {
        "CORS_ORIGINS": page_url,
        "SOCKETIO_JWT_KEY": JWT_KEY,
        "REST_CHANNEL_TOKEN": REST_TOKEN,
    }
    patch = pytest.MonkeyPatch()
    for name, value in security.items():
        patch.setenv(name, value)  # rasa_service() reads CORS_ORIGINS for `--cors`
    request.addfinalizer(patch.undo)
    services = [
        stack.generator_service(gen_port, work),
        stack.actions_service(act_port, work, env={
            "GENERATOR_URL": f"http://127.0.0.1:{gen_port}/v1",
            # three candidates take ~15 s on 2 busy cores: the shared 20 s limit was once
            # missed in CI, and the typing-indicator test needs the candidates' metadata
            "GENERATOR_TIMEOUT_S": str(3 * GENERATOR_TIMEOUT_S),
            "BANK_DB_URL": bank_url,
            # generated candidates on (off by default): a knowledge answer then takes
            # seconds, the slow turn the typing indicator and the reconnect test need
            "LLM_CANDIDATES": "3",
        }),
        stack.rasa_service(
            rasa_port, work, trained_model, stack.endpoints_for(act_port, work),
            env={"TRACKER_STORE_URL": f"sqlite:///{db_path}", **security},
            extra_args=["--enable-api", "--auth-token", API_TOKEN],
        ),
        stack.web_service(web_port, work, env={"RASA_PORT": str(rasa_port), **security}),
    ]
    with stack.running(services):
        yield WebStack(*services, rasa_url=f"http://127.0.0.1:{rasa_port}", page_url=page_url, db_path=db_path)


@pytest.fixture(scope="session")
def chromium():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: `make browser` installs Debian's package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, request):
    """A fresh visitor (empty storage); a screenshot of the end state is kept."""
    context = chromium.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"))
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def keep_screenshot(path: Path, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENSHOTS / name)
