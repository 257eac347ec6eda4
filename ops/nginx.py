"""nginx in front of the Rasa replicas, from one template: deploy/nginx.conf.j2.

The same template gives deploy/nginx.conf (compose; `python -m ops.nginx` writes it,
`--check` says whether it is current) and the configuration of the scale-out stack on
one machine (`nginx_config`, run by `nginx_service` with Debian's nginx).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from assistant import config
from assistant.conversations import ReplySource
from ops import settings
from ops.services import Service

NGINX = settings.OPS.nginx or shutil.which("nginx") or "/usr/sbin/nginx"
TEMPLATE = settings.ROOT / "deploy" / "nginx.conf.j2"
COMPOSE_CONFIG = settings.ROOT / "deploy" / "nginx.conf"
COMPOSE_RASA = "rasa:5005"  # the compose service: every replica
RATE_LIMITED_JSON = '{"error": "Too many requests: please wait a moment and try again.", "retry_after": %d}'

# What the action servers' load balancer answers when no action server can run an
# action (connection refused, crashed, 5xx), by action; any other action gets the error,
# as it would without the load balancer (Rasa logs it and drops the action's events).
# - action_llm_reply: the polite template, as the action itself sends when the generator
#   fails, instead of no answer.
# - action_session_start: Rasa's own session start (SessionStarted, action_listen),
#   without the project's carry-over of a handoff pause. Without it a new conversation
#   has no session and no action_listen, and the policies then predict action_llm_reply
#   again and again until Rasa's circuit breaker stops them.
DEGRADED_ACTIONS: Dict[str, Dict[str, Any]] = {
    "action_llm_reply": {
        "events": [],
        "responses": [
            {"response": "utter_llm_fallback", "source": ReplySource.FALLBACK.value,
             "llm_error": "action server unavailable"}
        ],
    },
    "action_session_start": {
        "events": [{"event": "session_started"}, {"event": "action", "name": "action_listen"}],
        "responses": [],
    },
}


def rate_limit_context(limits: Any = None) -> Optional[Dict[str, Any]]:
    """The per-client limit of addons/rate_limit.py (RATE_LIMIT_CLIENT_PER_MIN, _BURST,
    RATE_LIMIT_EXEMPT; default: from the environment, assistant/config.py) for the template;
    None when off. One budget per client address for all replicas."""
    limits = limits or config.rate_limits()
    if limits.client_per_min <= 0:
        return None
    retry = max(1, math.ceil(60 / limits.client_per_min))
    return {"exempt": [str(net) for net in limits.exempt], "per_min": max(1, round(limits.client_per_min)),
            "burst": limits.client_burst, "retry_after": retry, "body": RATE_LIMITED_JSON % retry}


def render(**context: Any) -> str:
    import jinja2

    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return environment.from_string(TEMPLATE.read_text()).render(**context)


def nginx_config(
    work_dir: Path,
    port: int,
    rasa_ports: List[int],
    actions_port: Optional[int] = None,
    actions_ports: Iterable[int] = (),
    listen: Optional[str] = None,
    expose_upstream: bool = False,
    rate_limit: Any = None,
) -> str:
    """nginx of the scale-out stack on this machine: the replicas on loopback `rasa_ports`,
    listening on `listen` (BIND_HOST) : `port`; with `actions_port`, the action servers on
    `actions_ports` behind it with the degraded answers of DEGRADED_ACTIONS.
    `expose_upstream` adds an X-Upstream header naming the replica (tests). `rate_limit`
    (assistant.config.RateLimits; default: from the environment) sets the per-client limit."""
    actions = None
    if actions_port is not None:
        actions = {
            "listen": f"127.0.0.1:{actions_port}",
            "servers": [f"127.0.0.1:{p}" for p in actions_ports],
            "degraded": [('~\\"next_action\\"\\s*:\\s*\\"' + name + '\\"', json.dumps(body))
                         for name, body in DEGRADED_ACTIONS.items()],
        }
    return render(
        standalone={"work_dir": str(work_dir)},
        rasa_servers=[f"127.0.0.1:{p}" for p in rasa_ports],
        listen=f"{listen or settings.BIND_HOST}:{port}",
        expose_upstream=expose_upstream,
        rate_limit=rate_limit_context(rate_limit),
        actions=actions,
    )


def compose_config() -> str:
    """deploy/nginx.conf: the replicas of the compose service `rasa`, the default limits."""
    return render(standalone=None, rasa_servers=[COMPOSE_RASA], listen="80", expose_upstream=False,
                  rate_limit=rate_limit_context(config.RateLimits()), actions=None)


def nginx_service(work_dir: Path, port: int, config: str, name: str = "nginx") -> Service:
    work_dir.mkdir(parents=True, exist_ok=True)
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work_dir / "nginx-tmp" / folder).mkdir(parents=True, exist_ok=True)
    conf = work_dir / f"{name}.conf"
    conf.write_text(config)
    return Service(
        name=name,
        # -e: the error log before the configuration is read (else /var/log/nginx).
        argv=[NGINX, "-p", str(work_dir), "-c", str(conf), "-e", str(work_dir / f"{name}-error.log")],
        health_url=f"http://127.0.0.1:{port}/lb-health",
        log_path=work_dir / f"{name}.log",
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.nginx", description="write deploy/nginx.conf "
                                     "from deploy/nginx.conf.j2")
    parser.add_argument("--check", action="store_true", help="exit 1 if deploy/nginx.conf is not current")
    args = parser.parse_args(argv)
    wanted = compose_config()
    if args.check:
        current = COMPOSE_CONFIG.read_text() == wanted
        print(f"{COMPOSE_CONFIG} is {'current' if current else 'stale: run python -m ops.nginx'}")
        return 0 if current else 1
    COMPOSE_CONFIG.write_text(wanted)
    print(f"wrote {COMPOSE_CONFIG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
