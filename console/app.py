"""The agent console's web app (aiohttp): sign-in, the queue, a conversation, its actions.

Pages: GET /login, POST /login, POST /logout, GET / (the console; static/console.js
polls the JSON API below). JSON API (a signed-in agent's session cookie; every POST
also its CSRF token in `X-CSRF-Token`):

    GET  /api/queue                          open handoffs: waited, reason, customer, claim, last messages
    GET  /api/conversation?sender=ID&since=T  transcript (tracker store) and internal notes
    POST /api/claim    {sender}               take it; 409 when another agent holds it
    POST /api/reply    {sender, text}         to the customer's chat (only the agent holding it)
    POST /api/note     {sender, text}         internal, never sent to the customer
    POST /api/release  {sender}               hand back to the bot (as `ops release`)
    POST /api/close    {sender}               end the handoff with a closing message
    GET  /api/knowledge?q=WORDS               passages of the knowledge pages

Unauthenticated: /health, /metrics, /login, /static/. Without a session the API answers
401 and the console page redirects to /login; a POST without the session's CSRF token
gets 403.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Optional

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from console import auth, handoffs as hq, metrics, settings
from console.knowledge import Search
from console.rasa_api import RasaAPI, RasaError, transcript
from console.store import CLOSED, RELEASED, Store, StoreError

logger = logging.getLogger("console")
HERE = Path(__file__).resolve().parent
SESSION_KEY = "console_session"
CONSOLE_KEY = web.AppKey("console", object) if hasattr(web, "AppKey") else "console"
CLOSE_TEXT = ("{name} has closed this conversation. If you need anything else, just write here and "
              "the assistant will help you.")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LAST_MESSAGES = 3
LAST_MESSAGES_OF = 50

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _page(name: str, **values: str) -> str:
    text = (HERE / "templates" / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return text


def _secure(request: web.Request) -> bool:
    if settings.COOKIE_SECURE in ("1", "true", "yes"):
        return True
    if settings.COOKIE_SECURE in ("0", "false", "no"):
        return False
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str,
                max_age: Optional[int]) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Strict",
                        secure=_secure(request))


class Console:
    def __init__(self, store: Store, rasa: RasaAPI, search: Search) -> None:
        self.store, self.rasa, self.search = store, rasa, search
        self.limiter = auth.LoginLimiter(settings.LOGIN_ATTEMPTS, settings.LOGIN_CLIENT_ATTEMPTS, settings.LOGIN_WINDOW_S)

    async def db(self, function: Callable, *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    # -- sessions -------------------------------------------------------------------

    async def session(self, request: web.Request) -> Optional[Any]:
        token = request.cookies.get(auth.COOKIE)
        if not token or len(token) > 200:
            return None
        return await self.db(self.store.session, auth.token_hash(token))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        public = path in ("/health", "/metrics", "/login", "/favicon.ico") or path.startswith("/static/")
        if not public:
            session = await self.session(request)
            if session is None:
                if path.startswith("/api/") or request.method != "GET":
                    response: web.StreamResponse = _error(401, "Sign in to the console first.")
                else:
                    response = web.HTTPFound("/login")
                for key, value in SECURITY_HEADERS.items():
                    response.headers[key] = value
                return response
            if request.method not in ("GET", "HEAD"):
                given = request.headers.get("X-CSRF-Token")
                if given is None and request.content_type == "application/x-www-form-urlencoded":
                    given = (await request.post()).get("csrf")
                if not auth.same(given, session.csrf_token):
                    return _error(403, "Missing or wrong CSRF token: reload the console.")
            request[SESSION_KEY] = session
        try:
            response = await handler(request)
        except web.HTTPException as exception:
            response = exception
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    # -- pages ----------------------------------------------------------------------

    def _login_page(self, request: web.Request, error: str = "", status: int = 200,
                    headers: Optional[Dict[str, str]] = None) -> web.Response:
        # one token per browser until it signs in (a second tab or a favicon request
        # through the redirect must not invalidate the form already shown)
        token = request.cookies.get(auth.LOGIN_CSRF_COOKIE, "")
        if not (20 <= len(token) <= 100 and token.replace("-", "").replace("_", "").isalnum()):
            token = auth.new_token()
        response = web.Response(text=_page("login.html", csrf=token, error=error), content_type="text/html",
                                status=status, headers=headers)
        _set_cookie(response, request, auth.LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        return self._login_page(request)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        name, password = str(form.get("name") or "").strip(), str(form.get("password") or "")
        if not auth.same(str(form.get("csrf") or ""), request.cookies.get(auth.LOGIN_CSRF_COOKIE)):
            metrics.LOGINS.labels("csrf").inc()
            return self._login_page(request, "The sign-in form expired: please try again.", status=403)
        client = request.remote or ""
        wait = self.limiter.wait(client, name)
        if wait:
            metrics.LOGINS.labels("limited").inc()
            seconds = max(1, int(wait + 0.999))
            return self._login_page(request, f"Too many failed sign-ins: try again in {seconds} s.", status=429,
                                    headers={"Retry-After": str(seconds)})
        agent = await self.db(self.store.agent, name) if name and len(name) <= 64 else None
        ok, new_hash = await self.db(auth.verify_password, agent.password_hash if agent else None, password[:1024])
        if not ok or agent is None or agent.disabled:
            self.limiter.failed(client, name)
            metrics.LOGINS.labels("failed").inc()
            logger.warning("failed console sign-in for %r from %s", name[:64], client)
            return self._login_page(request, "Wrong name or password.", status=401)
        if new_hash:
            await self.db(self.store.set_password_hash, agent.name, new_hash)
        self.limiter.succeeded(client, name)
        token, csrf = auth.new_token(), auth.new_token()
        await self.db(self.store.create_session, auth.token_hash(token), agent.name, csrf, settings.SESSION_HOURS)
        metrics.LOGINS.labels("ok").inc()
        logger.info("%s signed in to the console", agent.name)
        response = web.HTTPFound("/")
        _set_cookie(response, request, auth.COOKIE, token, max_age=int(settings.SESSION_HOURS * 3600))
        response.del_cookie(auth.LOGIN_CSRF_COOKIE, path="/")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(auth.COOKIE, "")
        await self.db(self.store.delete_session, auth.token_hash(token))
        response = web.HTTPFound("/login")
        response.del_cookie(auth.COOKIE, path="/")
        return response

    async def index(self, request: web.Request) -> web.StreamResponse:
        session = request[SESSION_KEY]
        return web.Response(text=_page("console.html", csrf=session.csrf_token, agent=session.agent,
                                       display_name=session.display_name), content_type="text/html")

    async def health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def metrics_page(self, request: web.Request) -> web.StreamResponse:
        counts = await self.db(self.store.counts)
        metrics.WAITING.set(counts["waiting"])
        metrics.CLAIMED.set(counts["claimed"])
        return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- the API --------------------------------------------------------------------

    async def _body(self, request: web.Request, *fields: str) -> Dict[str, str]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text=json.dumps({"error": "The body must be a JSON object."}),
                                     content_type="application/json")
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text=json.dumps({"error": "The body must be a JSON object."}),
                                     content_type="application/json")
        values = {}
        for name in fields:
            value = body.get(name)
            if not isinstance(value, str) or not value.strip():
                raise web.HTTPBadRequest(text=json.dumps({"error": f"'{name}' must be a non-empty string."}),
                                         content_type="application/json")
            limit = settings.MAX_TEXT_CHARS if name == "text" else 255
            if len(value) > limit:
                raise web.HTTPRequestEntityTooLarge(
                    max_size=limit, actual_size=len(value),
                    text=json.dumps({"error": f"'{name}' is longer than {limit} characters."}),
                    content_type="application/json")
            values[name] = value.strip() if name == "text" else value
        return values

    async def queue(self, request: web.Request) -> web.StreamResponse:
        rows = await self.db(self.store.queue)
        now = hq.now()

        async def last(sender: str) -> list:
            try:
                items = transcript(await self.rasa.events(sender))
            except RasaError:
                return []
            return [i for i in items if i["kind"] != "event"][-LAST_MESSAGES:]

        # the last messages of the oldest 50 (one tracker read each); the rest without them
        lasts = await asyncio.gather(*(last(row["sender_id"]) for row in rows[:LAST_MESSAGES_OF]))
        lasts += [[] for _ in rows[LAST_MESSAGES_OF:]]
        items = []
        for row, messages in zip(rows, lasts):
            items.append({
                "sender": row["sender_id"], "customer": row["customer_id"], "reason": row["reason"],
                "requested_at": row["requested_at"].isoformat() + "Z",
                "waiting_s": max(0, int((now - row["requested_at"]).total_seconds())),
                "claimed_by": row["claimed_by"], "replies": row["replies"] or 0, "last_messages": messages,
            })
        return web.json_response({"conversations": items, "agent": request[SESSION_KEY].agent})

    async def conversation(self, request: web.Request) -> web.StreamResponse:
        sender = request.query.get("sender", "")
        if not sender or len(sender) > 255:
            return _error(400, "'sender' is required.")
        try:
            since = float(request.query.get("since") or 0)
        except ValueError:
            return _error(400, "'since' must be a number (a timestamp).")
        handoff = await self.db(self.store.latest_handoff, sender)
        if handoff is None:
            return _error(404, f"{sender} never asked for a person.")
        try:
            items = transcript(await self.rasa.events(sender), since)
        except RasaError as error:
            return _error(502, str(error))
        notes = [{"kind": "note", "text": n["text"], "author": n["author"],
                  "ts": n["created_at"].replace(tzinfo=dt.timezone.utc).timestamp()}
                 for n in await self.db(self.store.notes, sender)]
        return web.json_response({
            "sender": sender, "customer": handoff["customer_id"], "reason": handoff["reason"],
            "status": handoff["status"], "claimed_by": handoff["claimed_by"],
            "messages": items, "notes": [n for n in notes if n["ts"] > since],
        })

    async def _held(self, sender: str, agent: str, allow_unclaimed: bool = False) -> Dict[str, Any]:
        handoff = await self.db(self.store.open_handoff, sender)
        if handoff is None:
            raise web.HTTPConflict(text=json.dumps({"error": f"{sender} is not waiting for a person any more."}),
                                   content_type="application/json")
        holder = handoff["claimed_by"]
        if holder != agent and not (allow_unclaimed and holder is None):
            message = f"{holder} holds this conversation." if holder else "Claim the conversation first."
            raise web.HTTPConflict(text=json.dumps({"error": message, "claimed_by": holder}),
                                   content_type="application/json")
        return handoff

    async def claim(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, "sender")
        agent = request[SESSION_KEY].agent
        try:
            ok, holder = await self.db(self.store.claim, body["sender"], agent)
        except StoreError as error:
            return _error(409, str(error))
        if not ok:
            return web.json_response({"error": f"{holder} already holds this conversation.", "claimed_by": holder},
                                     status=409)
        logger.info("%s claimed %s", agent, body["sender"])
        return web.json_response({"claimed_by": holder})

    async def reply(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, "sender", "text")
        session = request[SESSION_KEY]
        handoff = await self._held(body["sender"], session.agent)
        try:
            stamp = await self.rasa.send_agent_message(body["sender"], body["text"], session.agent,
                                                       session.display_name)
        except RasaError as error:
            return _error(502, str(error))
        metrics.AGENT_MESSAGES.inc()
        if await self.db(self.store.record_reply, handoff["id"]):
            metrics.FIRST_REPLY_SECONDS.observe((hq.now() - handoff["requested_at"]).total_seconds())
        return web.json_response({"sent": True, "ts": stamp})

    async def note(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, "sender", "text")
        handoff = await self.db(self.store.latest_handoff, body["sender"])
        if handoff is None:
            return _error(404, f"{body['sender']} never asked for a person.")
        await self.db(self.store.add_note, body["sender"], handoff["id"], request[SESSION_KEY].agent, body["text"])
        return web.json_response({"saved": True})

    async def release(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, "sender")
        session = request[SESSION_KEY]
        handoff = await self._held(body["sender"], session.agent, allow_unclaimed=True)
        try:
            await self.db(hq.release_to_bot, body["sender"], self.rasa.url, self.rasa.token, session.agent,
                          settings.RASA_TIMEOUT_S, self.store.url)
        except hq.handoff_error() as error:
            return _error(502, str(error))
        await self._ended(handoff, session.agent, RELEASED)
        return web.json_response({"outcome": RELEASED})

    async def close(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request, "sender")
        session = request[SESSION_KEY]
        handoff = await self._held(body["sender"], session.agent, allow_unclaimed=True)
        try:
            await self.rasa.close_conversation(body["sender"], CLOSE_TEXT.format(name=session.display_name),
                                               session.agent, session.display_name)
        except RasaError as error:
            return _error(502, str(error))
        await self.db(hq.release_handoff, body["sender"], session.agent, self.store.url)
        await self._ended(handoff, session.agent, CLOSED)
        return web.json_response({"outcome": CLOSED})

    async def _ended(self, handoff: Dict[str, Any], agent: str, outcome: str) -> None:
        await self.db(self.store.end, handoff["id"], handoff["sender_id"], agent, outcome)
        metrics.DURATION_SECONDS.labels(outcome).observe((hq.now() - handoff["requested_at"]).total_seconds())
        logger.info("%s %s %s", agent, outcome, handoff["sender_id"])

    async def knowledge(self, request: web.Request) -> web.StreamResponse:
        query = request.query.get("q", "")[:500]
        return web.json_response({"passages": self.search.search(query)})


def make_app(store: Optional[Store] = None, rasa: Optional[RasaAPI] = None,
             search: Optional[Search] = None) -> web.Application:
    if rasa is None:
        from ops.lifecycle import api_token

        rasa = RasaAPI(settings.RASA_URL, api_token(), settings.RASA_TIMEOUT_S)
    console = Console(store or Store(), rasa, search or Search(settings.KNOWLEDGE_DIR))
    app = web.Application(middlewares=[console.middleware], client_max_size=256 * 1024)
    app.router.add_get("/health", console.health)
    app.router.add_get("/metrics", console.metrics_page)
    app.router.add_get("/favicon.ico", lambda request: web.Response(status=204))
    app.router.add_get("/login", console.login_form)
    app.router.add_post("/login", console.login)
    app.router.add_post("/logout", console.logout)
    app.router.add_get("/", console.index)
    app.router.add_get("/api/queue", console.queue)
    app.router.add_get("/api/conversation", console.conversation)
    app.router.add_post("/api/claim", console.claim)
    app.router.add_post("/api/reply", console.reply)
    app.router.add_post("/api/note", console.note)
    app.router.add_post("/api/release", console.release)
    app.router.add_post("/api/close", console.close)
    app.router.add_get("/api/knowledge", console.knowledge)
    app.router.add_static("/static/", HERE / "static")

    async def cleanup(app: web.Application) -> None:
        await console.rasa.close()
        console.store.close()

    app.on_cleanup.append(cleanup)
    app[CONSOLE_KEY] = console
    return app


def main(argv: Optional[list] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m console", description="the agent console")
    parser.add_argument("--host", default=settings.HOST)
    parser.add_argument("--port", type=int, default=settings.PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.time()
    app = make_app()
    logger.info("agent console on http://%s:%d (Rasa %s, bank database %s), ready in %.1f s", args.host, args.port,
                settings.RASA_URL, hq.display_url(), time.time() - started)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0
