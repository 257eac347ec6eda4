"""The console's tables, in the bank database next to the handoff queue (BANK_DB_URL), made
and changed only by the bank's migrations (assistant/bank/migrations/).

- console_agents: staff accounts (argon2 hashes, never passwords);
- console_sessions: signed-in browsers (the SHA-256 of the cookie's token, its CSRF token);
- console_claims: one row per handoff an agent took: who, when, the first reply, the end.
  Its key is the handoff's id, so a claim is one INSERT that the database refuses for a
  second agent: two agents can never hold the same conversation (tests/test_console.py
  races them);
- console_notes: internal notes, never sent to the customer.

All access is synchronous (SQLAlchemy 1.4, sqlite3 or psycopg2); the web app calls it in
a thread so that its event loop never waits on the database.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import sqlalchemy as sa

from console import handoffs as hq

metadata = sa.MetaData()

agents = sa.Table(
    "console_agents", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.String(120), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

sessions = sa.Table(
    "console_sessions", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("agent", sa.String(64), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
)

claims = sa.Table(
    "console_claims", metadata,
    sa.Column("handoff_id", sa.Integer, primary_key=True, autoincrement=False),  # handoffs.id
    sa.Column("sender_id", sa.String(255), nullable=False, index=True),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("claimed_at", sa.DateTime),
    sa.Column("first_reply_at", sa.DateTime),
    sa.Column("replies", sa.Integer, nullable=False, default=0),
    sa.Column("ended_at", sa.DateTime),
    sa.Column("outcome", sa.String(16)),  # released (to the bot) | closed
)

notes = sa.Table(
    "console_notes", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sender_id", sa.String(255), nullable=False, index=True),
    sa.Column("handoff_id", sa.Integer),
    sa.Column("author", sa.String(64), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

RELEASED, CLOSED = "released", "closed"


class StoreError(ValueError):
    """A request the store refuses, with a message for the agent."""


@dataclass(frozen=True)
class Agent:
    name: str
    display_name: str
    password_hash: str
    disabled: bool


@dataclass(frozen=True)
class Session:
    agent: str
    display_name: str
    csrf_token: str
    expires_at: dt.datetime


class Store:
    def __init__(self, url: Optional[str] = None) -> None:
        self.url = hq.bank_db_url(url)
        hq.ensure_schema(self.url)  # the console's tables are in the bank's migrations
        self.engine = hq.sync_engine(self.url)

    def close(self) -> None:
        self.engine.dispose()

    # agents

    def add_agent(self, name: str, display_name: str, password_hash: str, replace: bool = False) -> bool:
        """Create the account (True), or with replace set its password and name again (False)."""
        with self.engine.begin() as db:
            exists = db.execute(sa.select(agents.c.id).where(agents.c.name == name)).first()
            if exists and not replace:
                raise StoreError(f"an agent named {name!r} exists (--reset sets a new password)")
            if exists:
                db.execute(sa.update(agents).where(agents.c.name == name).values(
                    display_name=display_name, password_hash=password_hash, disabled=False))
                db.execute(sa.delete(sessions).where(sessions.c.agent == name))
                return False
            db.execute(sa.insert(agents).values(name=name, display_name=display_name, password_hash=password_hash,
                                                disabled=False, created_at=hq.now()))
            return True

    def disable_agent(self, name: str) -> bool:
        with self.engine.begin() as db:
            done = db.execute(sa.update(agents).where(agents.c.name == name).values(disabled=True)).rowcount
            db.execute(sa.delete(sessions).where(sessions.c.agent == name))
        return bool(done)

    def agent(self, name: str) -> Optional[Agent]:
        with self.engine.connect() as db:
            row = db.execute(sa.select(agents).where(agents.c.name == name)).first()
        return Agent(row.name, row.display_name, row.password_hash, bool(row.disabled)) if row else None

    def set_password_hash(self, name: str, password_hash: str) -> None:
        with self.engine.begin() as db:
            db.execute(sa.update(agents).where(agents.c.name == name).values(password_hash=password_hash))

    def list_agents(self) -> List[Agent]:
        with self.engine.connect() as db:
            return [Agent(r.name, r.display_name, r.password_hash, bool(r.disabled))
                    for r in db.execute(sa.select(agents).order_by(agents.c.name))]

    # sessions

    def create_session(self, token_hash: str, agent: str, csrf_token: str, hours: float) -> None:
        created = hq.now()
        with self.engine.begin() as db:
            db.execute(sa.delete(sessions).where(sessions.c.expires_at < created))
            db.execute(sa.insert(sessions).values(token_hash=token_hash, agent=agent, csrf_token=csrf_token,
                                                  created_at=created,
                                                  expires_at=created + dt.timedelta(hours=hours)))

    def session(self, token_hash: str) -> Optional[Session]:
        query = (sa.select(sessions, agents.c.display_name, agents.c.disabled)
                 .join(agents, agents.c.name == sessions.c.agent)
                 .where(sessions.c.token_hash == token_hash))
        with self.engine.connect() as db:
            row = db.execute(query).first()
        if row is None or row.disabled or row.expires_at <= hq.now():
            return None
        return Session(row.agent, row.display_name, row.csrf_token, row.expires_at)

    def delete_session(self, token_hash: str) -> None:
        with self.engine.begin() as db:
            db.execute(sa.delete(sessions).where(sessions.c.token_hash == token_hash))

    # the queue and claims

    def _handoff_query(self) -> Any:
        h = hq.handoffs
        return (sa.select(h.c.id, h.c.sender_id, h.c.customer_id, h.c.status, h.c.reason, h.c.requested_at,
                          claims.c.claimed_by, claims.c.claimed_at, claims.c.first_reply_at, claims.c.replies)
                .select_from(h.outerjoin(claims, claims.c.handoff_id == h.c.id)))

    def queue(self) -> List[Dict[str, Any]]:
        """Open handoffs, oldest first, with their claim."""
        query = self._handoff_query().where(hq.handoffs.c.status == hq.OPEN).order_by(
            hq.handoffs.c.requested_at, hq.handoffs.c.id)
        with self.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(query)]

    def open_handoff(self, sender_id: str) -> Optional[Dict[str, Any]]:
        query = self._handoff_query().where(hq.handoffs.c.sender_id == sender_id,
                                            hq.handoffs.c.status == hq.OPEN)
        with self.engine.connect() as db:
            row = db.execute(query.order_by(hq.handoffs.c.id.desc())).first()
        return dict(row._mapping) if row else None

    def latest_handoff(self, sender_id: str) -> Optional[Dict[str, Any]]:
        query = self._handoff_query().where(hq.handoffs.c.sender_id == sender_id)
        with self.engine.connect() as db:
            row = db.execute(query.order_by(hq.handoffs.c.id.desc())).first()
        return dict(row._mapping) if row else None

    def claim(self, sender_id: str, agent: str) -> Tuple[bool, str]:
        """Take the conversation's open handoff: (True, agent), or (False, who holds it).

        One INSERT keyed by the handoff's id: of two agents claiming at once, the
        database lets exactly one row in."""
        handoff = self.open_handoff(sender_id)
        if handoff is None:
            raise StoreError(f"{sender_id} is not waiting for a person")
        if handoff["claimed_by"]:
            return handoff["claimed_by"] == agent, handoff["claimed_by"]
        try:
            with self.engine.begin() as db:
                db.execute(sa.insert(claims).values(handoff_id=handoff["id"], sender_id=sender_id,
                                                    claimed_by=agent, claimed_at=hq.now(), replies=0))
        except sa.exc.IntegrityError:
            holder = (self.open_handoff(sender_id) or {}).get("claimed_by") or "another agent"
            return holder == agent, holder
        return True, agent

    def record_reply(self, handoff_id: int) -> bool:
        """Count an agent reply; True when it was the first of this handoff."""
        with self.engine.begin() as db:
            first = db.execute(sa.update(claims).where(claims.c.handoff_id == handoff_id,
                                                       claims.c.first_reply_at.is_(None))
                               .values(first_reply_at=hq.now())).rowcount
            db.execute(sa.update(claims).where(claims.c.handoff_id == handoff_id)
                       .values(replies=claims.c.replies + 1))
        return bool(first)

    def end(self, handoff_id: int, sender_id: str, agent: str, outcome: str) -> None:
        """Record how the handoff ended (a handoff nobody claimed gets its row here)."""
        stamp = hq.now()
        with self.engine.begin() as db:
            done = db.execute(sa.update(claims).where(claims.c.handoff_id == handoff_id)
                              .values(ended_at=stamp, outcome=outcome)).rowcount
            if not done:
                db.execute(sa.insert(claims).values(handoff_id=handoff_id, sender_id=sender_id, claimed_by=None,
                                                    claimed_at=None, replies=0, ended_at=stamp, outcome=outcome))

    def counts(self) -> Dict[str, int]:
        """Open handoffs nobody has claimed (waiting) and claimed ones (with an agent)."""
        rows = self.queue()
        waiting = sum(1 for row in rows if not row["claimed_by"])
        return {"waiting": waiting, "claimed": len(rows) - waiting}

    def outcomes(self) -> Dict[str, int]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(claims.c.outcome, sa.func.count()).where(claims.c.outcome.isnot(None))
                              .group_by(claims.c.outcome)).all()
        return {outcome: int(count) for outcome, count in rows}

    # notes

    def add_note(self, sender_id: str, handoff_id: Optional[int], author: str, text: str) -> Dict[str, Any]:
        values = dict(sender_id=sender_id, handoff_id=handoff_id, author=author, text=text, created_at=hq.now())
        with self.engine.begin() as db:
            db.execute(sa.insert(notes).values(**values))
        return values

    def notes(self, sender_id: str) -> List[Dict[str, Any]]:
        with self.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(
                sa.select(notes).where(notes.c.sender_id == sender_id).order_by(notes.c.id))]

    def erase(self, sender_id: str) -> int:
        """Delete the sender's claims and notes (a data-protection request)."""
        with self.engine.begin() as db:
            count = db.execute(sa.delete(notes).where(notes.c.sender_id == sender_id)).rowcount
            count += db.execute(sa.delete(claims).where(claims.c.sender_id == sender_id)).rowcount
        return count
