"""Talk to the running assistant in the terminal, through its REST channel.

This is Rasa's own `rasa shell` client pointed at the running server, so the
conversation goes through the real stack (actions, generator, tracker store).
"""
from __future__ import annotations

import asyncio
import uuid

from ops import settings


def shell(sender_id: str = "") -> int:
    from rasa.core.channels import console

    url = f"http://127.0.0.1:{settings.RASA_PORT}"
    sender = sender_id or f"shell-{uuid.uuid4().hex[:8]}"
    print(f"Talking to {url} as {sender}. Type /stop to leave.")
    asyncio.run(
        console.record_messages(
            sender_id=sender,
            server_url=url,
            max_message_limit=None,
            use_response_stream=False,
            request_timeout=settings.SHELL_REQUEST_TIMEOUT_S,
        )
    )
    return 0
