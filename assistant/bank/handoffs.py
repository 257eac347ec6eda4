"""The operators' side of the handoff queue (sync): what `python -m ops handoffs` lists and
`ops release` (and the agent console) marks released. The actions queue a conversation
with `Bank.open_handoff` (repository.py).
"""
from __future__ import annotations

from typing import List, Optional

import sqlalchemy as sa

from assistant.bank.engine import sync_engine
from assistant.bank.migrate import ensure_schema
from assistant.bank.schema import OPEN, RELEASED, Handoff, _handoff, handoffs, now


def list_handoffs(url: Optional[str] = None, include_released: bool = False) -> List[Handoff]:
    ensure_schema(url)
    engine = sync_engine(url)
    try:
        query = sa.select(handoffs).order_by(handoffs.c.requested_at, handoffs.c.id)
        if not include_released:
            query = query.where(handoffs.c.status == OPEN)
        with engine.connect() as connection:
            return [_handoff(row) for row in connection.execute(query)]
    finally:
        engine.dispose()


def release_handoff(sender_id: str, released_by: str, url: Optional[str] = None) -> Optional[Handoff]:
    """Mark the conversation's open handoff released; the handoff, or None if none was open."""
    ensure_schema(url)
    engine = sync_engine(url)
    try:
        with engine.begin() as connection:
            row = connection.execute(sa.select(handoffs).where(
                handoffs.c.sender_id == sender_id, handoffs.c.status == OPEN
            )).first()
            if row is None:
                return None
            connection.execute(sa.update(handoffs).where(handoffs.c.sender_id == sender_id,
                                                         handoffs.c.status == OPEN)
                               .values(status=RELEASED, released_at=now(), released_by=released_by[:120]))
            row = connection.execute(sa.select(handoffs).where(handoffs.c.id == row.id)).first()
        return _handoff(row)
    finally:
        engine.dispose()

