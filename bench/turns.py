"""Turn throughput: stock Rasa 3.6 (DIET + TED, Rasa's SQLTrackerStore) against this
project's default configuration, under the same closed-loop load, in one run.

Each of N simulated users holds a 10-turn conversation through the REST channel,
sending the next message as soon as the reply arrives (N = 1, 20, 50). Turns are
intent-only (Banking77 training sentences of the 71 intents answered by one response;
not the six that start a form); an action server with
no generator behind it is running, so a turn routed to the LLM answers with the
fallback template at once. Reports turns/s, latency p50/p95/p99 and errors, and the
ratio of the project's turns/s to stock's.

All configurations run at once (idle while another is measured). For each number of
users, every configuration takes the load in turn, for several rounds, and the rounds
are pooled: a slower minute on a shared machine falls on all of them, not on one.

    .venvs/rasa/bin/python -m bench.turns [--users 1 20 50] [--rounds 3] [--skip-stock]
        [--stock-epochs 5 | --stock-model models/bench/stock-5-epochs.tar.gz]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import yaml

from bench import client
from ops import settings, stack
from ops.data import read_banking77
from ops.stack import free_port
from ops.train import latest_model

TURNS = 10
# The scale-out form of the same files: two Sanic workers sharing a Redis lock store
# and a PostgreSQL tracker store (see deploy/scale-out.env).
SCALE_OUT = {
    "SANIC_WORKERS": "2",
    "LOCK_STORE_URL": "redis://127.0.0.1:6379/1",
    "TRACKER_STORE_URL": os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
}
RESULTS = settings.ROOT / "bench" / "results" / "turns.md"
STOCK_MODELS = settings.MODELS_DIR / "bench"  # gitignored, out of `latest_model`'s way


def answered_by_one_response() -> set:
    """Intents whose rule is just their answer (data/rules/banking.yml); the six that
    start a form after their answer are left out, so every turn stays intent-only."""
    rules = yaml.safe_load((settings.ROOT / "data" / "rules" / "banking.yml").read_text())["rules"]
    return {
        rule["steps"][0]["intent"] for rule in rules
        if len(rule["steps"]) == 2 and "intent" in rule["steps"][0]
        and rule["steps"][1].get("action", "").startswith("utter_") and not rule.get("condition")
    }


def messages(count: int = 500) -> List[str]:
    intents = answered_by_one_response()
    texts = [t for intent, ts in read_banking77(settings.SHARED_DATA_DIR / "banking77" / "train.csv").items()
             if intent in intents for t in ts]
    random.Random(9).shuffle(texts)
    return texts[:count]


def scale_out_available() -> bool:
    import redis
    import sqlalchemy as sa

    try:
        redis.Redis.from_url(SCALE_OUT["LOCK_STORE_URL"], socket_timeout=1).ping()
        with sa.create_engine(SCALE_OUT["TRACKER_STORE_URL"]).connect():
            return True
    except Exception:  # noqa: BLE001 - no server here: measure the rest
        print("Redis or PostgreSQL not reachable: skipping the scale-out run", flush=True)
        return False


STOCK_CONFIG = settings.ROOT / "bench" / "configs" / "stock_diet_ted.yml"


def stock_config(epochs: int, work: Path) -> Path:
    """bench/configs/stock_diet_ted.yml with every trained component at `epochs`."""
    config = yaml.safe_load(STOCK_CONFIG.read_text())
    for component in config["pipeline"] + config["policies"]:
        if "epochs" in component:
            component["epochs"] = epochs
    path = work / f"stock-{epochs}-epochs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train_stock(epochs: int, out: Path, work: Path) -> Path:
    started = time.monotonic()
    subprocess.run(
        [str(settings.RASA_VENV / "bin" / "rasa"), "train", "--config", str(stock_config(epochs, work)),
         "--domain", "domain", "--data", "data", "--out", str(out), "--fixed-model-name", f"stock-{epochs}-epochs"],
        cwd=settings.ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "RASA_CACHE_DIRECTORY": str(work / "cache")},
    )
    print(f"stock model ({epochs} epochs) trained in {time.monotonic() - started:.0f} s", flush=True)
    return out / f"stock-{epochs}-epochs.tar.gz"


async def load(url: str, users: int, pool: List[str], tag: str) -> Dict:
    """N users at once, TURNS intent-only turns each (bench/client.py's load client)."""
    scripts = {
        f"{tag}-{users}-{u}": [("intent", pool[(u * TURNS + t) % len(pool)]) for t in range(TURNS)]
        for u in range(users)
    }
    turns, wall = await client.run_load(url, scripts, message_ids=False)
    summary = client.summarize(turns, wall)
    result = {key: summary[key] for key in ("turns", "turns_s", "p50", "p95", "p99", "errors", "wall_s")}
    result["senders"], result["turn_list"] = list(scripts), turns
    return result


@functools.lru_cache(maxsize=1)
def remote_actions() -> frozenset:
    """The domain's forms and custom actions (not responses), but the session start."""
    from rasa.shared.core.domain import Domain

    domain = Domain.load(str(settings.ROOT / "domain"))
    custom = {name for name in domain.user_actions if not name.startswith("utter_")}
    return frozenset((set(domain.form_names) | custom) - {"action_session_start"})


def action_server_share(db_url: str, senders: List[str]) -> float:
    """The share of user turns the bot answered through the action server (a form, or a
    custom action other than the session start), from the tracker store. The turns are
    all intents answered by one response, so this is how often the NLU's mistakes sent
    a turn down a form or to the LLM action: costlier turns, which weigh on turns/s."""
    remote = remote_actions()
    turns = remote_turns = 0
    for events in client.stored_events(db_url, senders).values():
        counted = True
        for event in events:
            if event["event"] == "user":
                turns, counted = turns + 1, False
            elif event["event"] == "action" and not counted and event.get("name") in remote:
                remote_turns, counted = remote_turns + 1, True
    return remote_turns / turns if turns else float("nan")


@dataclass
class Setup:
    """One configuration under test: its running action server and Rasa server."""

    label: str
    services: List[stack.Service]
    url: str
    db_url: str
    rounds: Dict[int, List[Dict]] = field(default_factory=dict)  # users -> each round's load()


def start(exits: contextlib.ExitStack, model: Path, work: Path, stock: bool, label: str, extra_env=None) -> Setup:
    """One configuration, running (stopped when `exits` closes) and warmed up."""
    tag = label.replace(" ", "").replace(",", "-")
    act_port, rasa_port = free_port(), free_port()
    credentials = settings.ROOT / "credentials.yml"
    database = work / f"{tag}.db"
    if stock:
        # Nothing of this project in the stock process: Rasa's own SQLTrackerStore,
        # in-memory lock store and REST channel. (The project's channels, stores and
        # broker live in `addons`, and Rasa loading them applies addons/fixes.py.)
        endpoints = work / "endpoints-stock.yml"
        endpoints.write_text(
            f'action_endpoint:\n  url: "http://127.0.0.1:{act_port}/webhook"\n'
            f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {database}\n"
            "lock_store:\n  type: in_memory\n"
        )
        credentials = work / "credentials-stock.yml"
        credentials.write_text("rest:\n")
    else:  # endpoints.yml as shipped
        endpoints = stack.endpoints_for(act_port, work / tag)
    env = {"TRACKER_STORE_URL": f"sqlite:///{database}", **(extra_env or {})}
    services = [
        stack.actions_service(act_port, work / tag, env={"GENERATOR_URL": "http://127.0.0.1:9/v1",
                                                        "GENERATOR_START_CHECK": "0"}),
        stack.rasa_service(rasa_port, work / tag, model, endpoints, credentials=credentials, env=env),
    ]
    setup = Setup(label, services, f"http://127.0.0.1:{rasa_port}/webhooks/rest/webhook", env["TRACKER_STORE_URL"])
    exits.enter_context(stack.running(services))
    asyncio.run(load(setup.url, 5, messages(), f"{tag}-{int(time.time())}-warmup"))
    return setup


def measure(setups: List[Setup], users: List[int], rounds: int) -> None:
    """For each number of users, `rounds` rounds in which every setup takes the same load in
    turn (the order rotates), so drifts in the machine's speed fall on all of them alike."""
    pool = messages()
    stamp = int(time.time())
    for n in users:
        for r in range(rounds):
            for setup in setups[r % len(setups):] + setups[:r % len(setups)]:
                tag = f"{setup.label.replace(' ', '').replace(',', '-')}-{stamp}-{n}-{r}"
                result = asyncio.run(load(setup.url, n, pool, tag))
                setup.rounds.setdefault(n, []).append(result)
                print(f"{setup.label:18} {n:3} users, round {r + 1}: {result['turns_s']:6.1f} turns/s  "
                      f"p50 {result['p50']:7.1f} ms  errors {result['errors']}", flush=True)


def pooled(setup: Setup, n: int) -> Dict:
    """All rounds of one setup and number of users together: turns/s = all turns over all
    their wall time; percentiles over all turns; errors summed."""
    rounds = setup.rounds[n]
    turns = [turn for r in rounds for turn in r["turn_list"]]
    result = client.summarize(turns, sum(r["wall_s"] for r in rounds))
    result["by_round"] = [r["turns_s"] for r in rounds]
    result["remote"] = action_server_share(setup.db_url, [s for r in rounds for s in r["senders"]])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 20, 50])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per number of users (default 3)")
    parser.add_argument("--skip-stock", action="store_true", help="measure only the project")
    parser.add_argument("--stock-epochs", type=int, default=5,
                        help="epochs for stock's DIET, ResponseSelector and TED (default 5: about 7 minutes "
                             "to train on 2 cores)")
    parser.add_argument("--stock-model", type=Path,
                        help="a stock model trained by an earlier run (models/bench/stock-N-epochs.tar.gz) "
                             "instead of training one")
    args = parser.parse_args()
    project_model = latest_model()
    if project_model is None:
        print("no model in models/: run `make train`", file=sys.stderr)
        return 2
    stock_model = None
    setups: List[Setup] = []
    with tempfile.TemporaryDirectory(prefix="bench-turns-") as tmp, contextlib.ExitStack() as exits:
        work = Path(tmp)
        if not args.skip_stock:
            stock_model = args.stock_model or train_stock(args.stock_epochs, STOCK_MODELS, work)
            setups.append(start(exits, stock_model, work, True, "stock"))
        setups.append(start(exits, project_model, work, False, "project"))
        if scale_out_available():
            setups.append(start(exits, project_model, work, False, "project, scale-out", SCALE_OUT))
        measure(setups, args.users, args.rounds)
        runs = {setup.label: {n: pooled(setup, n) for n in args.users} for setup in setups}
    lines = ["| configuration | users | turns/s | turns/s by round | p50 | p95 | p99 | errors "
             "| turns via the action server |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, results in runs.items():
        for n, r in results.items():
            by_round = " / ".join(f"{x:.0f}" for x in r["by_round"])
            lines.append(f"| {name} | {n} | {r['turns_s']:.1f} | {by_round} | {r['p50']:.0f} ms | {r['p95']:.0f} ms | "
                         f"{r['p99']:.0f} ms | {r['errors']} | {100 * r['remote']:.0f} % |")
    if "stock" in runs:
        others = [name for name in runs if name != "stock"]
        lines += ["", "| users | " + " | ".join(f"{o} / stock turns/s" for o in others) + " |",
                  "|---:|" + "---:|" * len(others)]
        ratio = lambda o, n: runs[o][n]["turns_s"] / runs["stock"][n]["turns_s"]  # noqa: E731
        lines += [f"| {n} | " + " | ".join(f"{ratio(o, n):.1f}×" for o in others)
                  + " |" for n in args.users]
    table = "\n".join(lines)
    print(table)
    if stock_model is not None:
        RESULTS.write_text(
            "# Turn throughput (latest run)\n\n"
            f"`.venvs/rasa/bin/python -m bench.turns` on {time.strftime('%Y-%m-%d')}: closed loop, "
            f"{TURNS} intent-only turns per user through the REST channel (Banking77 sentences of the "
            f"{len(answered_by_one_response())} intents answered by one response), one Rasa process each, "
            f"all running at once. For each number of users there are {args.rounds} rounds, and in each round "
            "every configuration takes the same load in turn (fresh conversations; the order rotates), so "
            "a change in the machine's speed during the run falls on all of them. The figures pool the "
            "rounds: turns/s is all turns over all their time; the percentiles are over all turns.\n\n"
            f"stock = `rasa init`'s DIET + TED pipeline and policies (bench/configs/stock_diet_ted.yml, model "
            f"`{stock_model.name}`) with "
            "Rasa's own SQLTrackerStore on SQLite, in-memory lock store and REST channel (no code of this "
            "project in its process); project = config.yml and endpoints.yml as shipped "
            "(async SQL tracker store on SQLite, in-memory lock store, one Sanic worker); "
            "project, scale-out = the same files with SANIC_WORKERS=2, LOCK_STORE_URL (Redis) and "
            "TRACKER_STORE_URL (PostgreSQL). *Turns via the action server*: the share of turns the bot "
            "answered through a form or a custom action (read back from the tracker store): every turn is "
            "an intent answered by one response, so these are turns the NLU misread into a form or the LLM "
            "action, which cost more.\n\n"
            + table + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
