"""The demo web page with the chat widget (http://localhost:8080 under `make run`).

Serves widget/demo/index.html, the built widget (widget/dist, made by `make widget`)
under /widget/, and /config.js: the widget's settings for this deployment: Rasa's
URL as seen from the browser and, when the socket.io channel requires a JWT
(`SOCKETIO_JWT_KEY`; `make run` sets one), a short-lived token for this visitor.

The token is the demo's sign-in: its `customer_id` claim names the demo customer
(BANK_DEMO_CUSTOMER_ID, default C1001), so the page's visitor can freeze that
customer's cards, check transfers and dispute payments in the demo bank database.
It is the only way the demo identity reaches the bot (addons/channels.py). A bank's
own website does the same from its back end: it signs the token for its logged-in
customer, and one without the claim for a visitor who is not signed in. Anyone who
can load this page acts as the demo customer, so it is for demos only: the
deployment files (deploy/) do not run it.
"""
from __future__ import annotations

import json
import secrets
import time
from typing import Any, Dict

from aiohttp import web

from assistant import config
from ops import settings

WIDGET_DIR = settings.ROOT / "widget"
TOKEN_LIFETIME_S = 3600
# The customer the demo page signs in as (empty: an anonymous visitor's token).
DEMO_CUSTOMER_ID = config.bank().demo_customer_id


def widget_config(host: str) -> Dict[str, Any]:
    """The options the demo page passes to LakesideChat.init()."""
    hostname = host.rsplit(":", 1)[0] if host and not host.endswith("]") else host
    page = config.ops()  # read per request: the run command sets the key before it starts the page
    server_url = page.public_rasa_url or f"http://{hostname or '127.0.0.1'}:{settings.RASA_PORT}"
    options: Dict[str, Any] = {"serverUrl": server_url, "title": "Lakeside Bank", "initialPayload": "/greet",
                               "helpUrl": "/help/{page}"}
    key, method = page.socketio_jwt_key, page.socketio_jwt_method
    if key and method.startswith("HS"):
        import jwt

        now = int(time.time())
        claims: Dict[str, Any] = {"sub": f"visitor-{secrets.token_hex(8)}", "iat": now,
                                  "exp": now + TOKEN_LIFETIME_S}
        if DEMO_CUSTOMER_ID:
            claims["customer_id"] = DEMO_CUSTOMER_ID
        options["token"] = jwt.encode(claims, key, algorithm=method)
    return options


async def config_js(request: web.Request) -> web.Response:
    body = f"window.LAKESIDE_CHAT_CONFIG = {json.dumps(widget_config(request.host))};\n"
    return web.Response(text=body, content_type="application/javascript", headers={"Cache-Control": "no-store"})


async def index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(WIDGET_DIR / "demo" / "index.html")


async def help_page(request: web.Request) -> web.Response:
    """A knowledge page as the bank's help centre shows it: the "Source:" line of an
    answer links here (the widget's helpUrl)."""
    import html

    from console.knowledge import load

    page = request.match_info["page"]
    passages = [p for p in load(settings.ROOT / "knowledge") if p.page == page] if page.replace("-", "").isalnum() else []
    if not passages:
        raise web.HTTPNotFound(text="no such help page")
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(passages[0].title)} · Lakeside Bank help</title>",
             "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em}</style>",
             f"<h1>{html.escape(passages[0].title)}</h1>"]
    heading = ""
    for passage in passages:
        if passage.heading and passage.heading != heading:
            heading = passage.heading
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(f"<p>{html.escape(passage.text)}</p>")
    return web.Response(text="".join(parts), content_type="text/html")


async def health(_: web.Request) -> web.Response:
    built = (WIDGET_DIR / "dist" / "lakeside-chat.js").is_file()
    return web.json_response({"status": "ok" if built else "widget not built"}, status=200 if built else 503)


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def app() -> web.Application:
    application = web.Application(middlewares=[security_headers])
    application.router.add_get("/", index)
    application.router.add_get("/config.js", config_js)
    application.router.add_get("/health", health)
    application.router.add_get("/help/{page}", help_page)
    application.router.add_static("/widget/", WIDGET_DIR / "dist")
    return application


def serve(host: str, port: int) -> None:
    dist = WIDGET_DIR / "dist" / "lakeside-chat.js"
    if not dist.is_file():
        raise SystemExit(f"{dist} is missing: run `make widget` (part of `make setup`)")
    web.run_app(app(), host=host, port=port, print=lambda *_: None)
