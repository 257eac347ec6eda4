"""Load test: simulated customers holding 10-turn conversations through the REST
channel, mixing intent turns and LLM turns, on the embedded default and on the
scale-out configuration, in one run.

    .venvs/rasa/bin/python -m bench.load [--customers 50] [--turns 10] [--llm-every 5]

Each customer sends its next message as soon as the reply to the last one arrives
(closed loop, bench/client.py). Intent turns are Banking77 validation questions (the
bot answers from a template, or from a form); every `--llm-every`-th turn is a CLINC150
out-of-scope question, which the bot sends to action_llm_reply (knowledge retrieval
and the generator). Reported: turns/s, p50/p95/p99 latency by turn kind, errors, and
from the tracker store how each turn was really answered.

  embedded   one `rasa run` as `make run` starts it: SQLite tracker store, in-memory
             lock store, no event broker; the action server called directly
  scale-out  ops.scale_out.scale_out_services: 2 Rasa replicas (one Sanic worker each)
             behind nginx, PostgreSQL tracker store, Redis lock store, RabbitMQ event
             broker; the action server behind the same nginx

Both use one generator process (started once with its defaults, or GENERATOR_URL)
and the newest model in models/. Writes bench/results/load.md.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

from assistant.conversations import ReplySource
from bench import client
from ops import scale_out, settings, stack
from ops.train import latest_model

RESULTS = settings.ROOT / "bench" / "results" / "load.md"
WARMUP_CUSTOMERS, WARMUP_TURNS = 4, 3
# How a turn was answered (bench/client.py answered_by), grouped for the latency table.
ANSWERS = {
    "template": ("template",),
    "LLM: generated": (ReplySource.LLM,),
    "LLM: no knowledge": (ReplySource.NO_KNOWLEDGE,),
    "LLM: fallback": (ReplySource.FALLBACK,),
}


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def generator_503s(metrics_url: Optional[str]) -> Optional[float]:
    """Requests the generator refused as overloaded so far (None: no local generator)."""
    if metrics_url is None:
        return None
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    return sum(float(v) for v in re.findall(r'(?m)^generator_requests_total\{[^}]*status="503"[^}]*\} (\S+)', text))


def measure(name: str, url: str, db_url: str, args, generator_metrics: Optional[str],
            upstreams: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    stamp = f"{int(time.time())}-{uuid.uuid4().hex[:4]}"
    warmup = client.mixed_scripts(f"load-warmup-{name}-{stamp}", WARMUP_CUSTOMERS, WARMUP_TURNS, 2)
    asyncio.run(client.run_load(url, warmup))
    scripts = client.mixed_scripts(f"load-{name}-{stamp}", args.customers, args.turns, args.llm_every)
    shed_before = generator_503s(generator_metrics)
    load_before = load_average()
    print(f"{name}: {args.customers} customers x {args.turns} turns (load average {load_before}) ...", flush=True)
    turns, wall = asyncio.run(client.run_load(url, scripts, timeout_s=args.timeout))
    load_after = load_average()
    shed_after = generator_503s(generator_metrics)
    summary = client.summarize(turns, wall)
    failed = [t for t in turns if not t.ok]
    summary["failures"] = dict(Counter(f for t in failed for f in t.failures))
    summary["handoffs"] = sum(t.handoff for t in turns)
    summary["scripted"] = sum(len(script) for script in scripts.values())
    for turn in failed:
        print(f"  no reply: {turn.sender} #{turn.index} ({turn.kind}) {turn.text!r}: {turn.failures}", flush=True)
    stored = client.stored_events(db_url, scripts)
    answers = client.answered_by(turns, stored)
    by_answer = {
        label: client.figures([t for t in turns if answers[t.message_id] in sources])
        for label, sources in ANSWERS.items()
    }
    summary.update(
        name=name, load_before=load_before, load_after=load_after,
        routes=client.routes(turns, stored), by_answer=by_answer,
        shed=None if shed_before is None or shed_after is None else shed_after - shed_before,
    )
    if upstreams:
        served: Dict[str, int] = {}
        for turn in turns:
            port = turn.upstream.split(",")[-1].strip().rsplit(":", 1)[1] if turn.upstream else "?"
            served[upstreams.get(port, port)] = served.get(upstreams.get(port, port), 0) + 1
        summary["served"] = served
    k = summary["by_kind"]
    print(f"{name}: {summary['turns_s']:.1f} turns/s, p50 {summary['p50']:.0f} ms, p95 {summary['p95']:.0f} ms, "
          f"p99 {summary['p99']:.0f} ms; intent p95 {k['intent']['p95']:.0f} ms, llm p95 "
          f"{k.get('llm', {}).get('p95', float('nan')):.0f} ms; errors {summary['errors']}", flush=True)
    return summary


def run_embedded(work: Path, model: Path, generator_url: str, args, generator_metrics) -> Dict[str, Any]:
    actions_port, rasa_port = stack.free_ports(2)
    db = work / "embedded.db"
    services = [
        stack.actions_service(actions_port, work, env={"GENERATOR_URL": generator_url,
                                                       "BANK_DB_URL": f"sqlite:///{work / 'bank.db'}"}),
        stack.rasa_service(rasa_port, work, model, stack.endpoints_for(actions_port, work / "embedded"),
                           env={"TRACKER_STORE_URL": f"sqlite:///{db}", "LOCK_STORE_URL": "",
                                "EVENT_BROKER_URL": "", "SANIC_WORKERS": "1"},
                           interface="127.0.0.1"),
    ]
    with stack.running(services):
        return measure("embedded", f"http://127.0.0.1:{rasa_port}/webhooks/rest/webhook", f"sqlite:///{db}",
                       args, generator_metrics)


def run_scale_out(work: Path, model: Path, generator_url: str, args, generator_metrics,
                  stores: Dict[str, str]) -> Dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    queue, exchange = f"bench_load_{tag}", f"bench-load-{tag}"
    so = scale_out.scale_out_services(
        work / "scale-out", model, replicas=args.replicas, stores=stores, expose_upstream=True,
        actions_env={"GENERATOR_URL": generator_url, "BANK_DB_URL": f"sqlite:///{work / 'bank.db'}"},
        rasa_env={"EVENT_BROKER_QUEUE": queue, "LOCK_STORE_KEY_PREFIX": f"bench{tag}"},
        event_broker={"exchange_name": exchange},
    )
    try:
        with stack.running(*so.stages):
            upstreams = {r.health_url.split(":")[2].split("/")[0]: r.name for r in so.rasa}
            summary = measure("scale-out", f"{so.url}/webhooks/rest/webhook", stores["TRACKER_STORE_URL"],
                              args, generator_metrics, upstreams)
            summary["published"] = asyncio.run(_queue_size(stores["EVENT_BROKER_URL"], queue))
            return summary
    finally:
        asyncio.run(_delete_queue(stores["EVENT_BROKER_URL"], queue, exchange))


async def _queue_size(url: str, queue: str) -> Optional[int]:
    import aio_pika

    await asyncio.sleep(2)  # the replicas publish in the background
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count


async def _delete_queue(url: str, queue: str, exchange: str) -> None:
    import aio_pika

    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        await channel.exchange_delete(exchange)


def ms(figures: Dict[str, Any]) -> str:
    return f"{figures['p50']:.0f} / {figures['p95']:.0f} / {figures['p99']:.0f}"


def report(runs: List[Dict[str, Any]], args, started: str, wall_s: float) -> str:
    lines = [
        "# Load test (latest run)",
        "",
        f"`.venvs/rasa/bin/python -m bench.load --customers {args.customers} --turns {args.turns} "
        f"--llm-every {args.llm_every}` on {started}, {wall_s / 60:.1f} min in all, on this machine: "
        f"{os.cpu_count()} CPU cores shared with other jobs (load average 1 / 5 / 15 min before each "
        "configuration and after its load is in the table).",
        "",
        f"{args.customers} simulated customers at once, each holding a {args.turns}-turn conversation through the "
        "REST channel, closed loop (the next message as soon as the reply arrives). Intent turns: Banking77 "
        f"validation questions; every {args.llm_every}th turn (staggered across customers): a CLINC150 "
        "out-of-scope question. Banking questions and open ones both go to action_llm_reply: an embeddings "
        "call to the generator (all-MiniLM-L6-v2 on CPU), retrieval, then the page's sentences or the honest "
        "\"I don't know\" (generated candidates as the action server's LLM_CANDIDATES: 0 by default; "
        "30 s timeout). "
        "Both configurations in this one run, with the same model, action server code and generator process.",
        "",
        "- embedded: one `rasa run` (one Sanic worker), SQLite tracker store, in-memory locks, no event broker.",
        "- scale-out: 2 `rasa run` replicas (one Sanic worker each) behind nginx, PostgreSQL tracker store, "
        "Redis lock store, RabbitMQ event broker (`ops.scale_out.scale_out_services`).",
        "",
        "Latency in ms, p50 / p95 / p99, from sending a message to its reply.",
        "",
        "| configuration | turns | turns/s | all turns | intent turns | LLM turns | errors | load avg before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        kinds = run["by_kind"]
        lines.append(
            f"| {run['name']} | {run['turns']} | {run['turns_s']:.1f} | {ms(run)} | {ms(kinds['intent'])} | "
            f"{ms(kinds['llm']) if 'llm' in kinds else '-'} | {run['errors']} | "
            f"{run['load_before']} → {run['load_after']} |"
        )
    lines += ["", "The same turns by how the bot answered them (from the tracker store): template = a "
              "response or form, no LLM; LLM = action_llm_reply: generated (the generator wrote candidates: "
              "source llm), no knowledge (retrieval found nothing: one embedding, no "
              "generation), fallback (the generator failed or timed out). Turns: count, then ms p50 / p95 / p99.",
              "", "| configuration | " + " | ".join(ANSWERS) + " |", "|---|" + "---:|" * len(ANSWERS)]
    for run in runs:
        cells = []
        for label in ANSWERS:
            f = run["by_answer"][label]
            cells.append(f"{f['turns']}: {ms(f)}" if f["turns"] else "0")
        lines.append(f"| {run['name']} | " + " | ".join(cells) + " |")
    lines += ["", "How each kind of turn was answered (`llm: <source>` = action_llm_reply with that "
              "metadata.source):", "",
              "| configuration | sent as | answered |", "|---|---|---|"]
    for run in runs:
        for kind, counts in sorted(run["routes"].items()):
            answered = ", ".join(f"{route} {n}" for route, n in sorted(counts.items(), key=lambda x: -x[1]))
            lines.append(f"| {run['name']} | {kind} | {answered} |")
    lines.append("")
    for run in runs:
        extra = []
        if run.get("handoffs"):
            extra.append(f"{run['handoffs']} conversations handed to a person (request_human), whose customers "
                         f"then stopped: {run['turns']} of {run['scripted']} scripted turns sent")
        if run.get("failures"):
            extra.append("turns without a reply: " + ", ".join(f"{k} {v}" for k, v in run["failures"].items()))
        if run.get("served"):
            extra.append("turns per replica: " + ", ".join(f"{k} {v}" for k, v in sorted(run["served"].items())))
        if run.get("published") is not None:
            extra.append(f"events published to RabbitMQ: {run['published']}")
        if run.get("shed") is not None:
            extra.append(f"generator requests refused as overloaded (503): {run['shed']:.0f}")
        if extra:
            lines.append(f"- {run['name']}: " + "; ".join(extra) + ".")
    if len(runs) == 2:
        a, b = runs
        lines += ["", f"scale-out / embedded: {b['turns_s'] / a['turns_s']:.2f}× the turns/s; intent-turn p95 "
                      f"{b['by_kind']['intent']['p95'] / a['by_kind']['intent']['p95']:.2f}×."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--llm-every", type=int, default=5, help="every Nth turn is an LLM turn (0: none)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120, help="seconds a client waits for one reply")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--skip-scale-out", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print, don't write bench/results/load.md")
    args = parser.parse_args()
    model = latest_model()
    if model is None:
        print("no model in models/: run `make train`", file=sys.stderr)
        return 2
    # TRACKER_STORE_URL etc. from the environment, else this machine's; always a broker
    stores = scale_out.scale_out_env({"EVENT_BROKER_URL": settings.OPS.event_broker_url
                                      or scale_out.SCALE_OUT_DEFAULTS["EVENT_BROKER_URL"]})
    missing = None if args.skip_scale_out else scale_out.scale_out_missing(stores)
    if missing:
        print(f"scale-out configuration unavailable: {missing}", file=sys.stderr)
        return 2
    started, began = time.strftime("%Y-%m-%d %H:%M"), time.monotonic()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        work = Path(tmp)
        generator_url = settings.OPS.generator_url
        generators, metrics_url = [], None
        if not generator_url:
            port = stack.free_port()
            generators = [stack.generator_service(port, work)]
            generator_url, metrics_url = f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{port}/metrics"
        with stack.running(generators):
            if not args.skip_embedded:
                runs.append(run_embedded(work, model, generator_url, args, metrics_url))
            if not args.skip_scale_out:
                runs.append(run_scale_out(work, model, generator_url, args, metrics_url, stores))
    text = report(runs, args, started, time.monotonic() - began)
    print(text)
    if not args.no_write and len(runs) == 2:
        RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
