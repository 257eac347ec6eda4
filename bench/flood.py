"""Flood test (issue 19): one client sending REST messages as fast as it can, while 20
other customers talk to the bot; their latency unloaded against flooded, and what the
flooder gets.

    .venvs/rasa/bin/python -m bench.flood [--customers 20] [--turns 10] [--seconds 30] [--rounds 2]
        [--front rasa nginx] [--client-limits 120/20 120/20/0 600/120/0]

One embedded stack of its own (as bench/load.py's: the generator, the action server,
one `rasa run` with SQLite and in-memory locks) with the product's default rate limits
(assistant/config.py RateLimits: 60 messages a minute per conversation, burst 20; 120
requests a minute per client address, burst 20; loopback exempt and the trusted proxy).
Every client talks to Rasa from loopback with its own X-Forwarded-For address, as
through a local nginx, so each is limited as a separate client (tests/test_rate_limits.py
does the same).

- customers: each its own address (198.51.100.N), holding conversations of `--turns`
  turns at a human pace (a pause of `--think` seconds, uniform, before each message),
  a new conversation (sender id) after each; greetings, knowledge questions (the
  development fact set's), thanks, goodbye. They run for `--seconds`, twice:
  unloaded, then flooded. A customer's turn must be answered (200, a non-empty reply):
  a 429 or any error is counted and shown.
- flooder: its own address (203.0.113.66), in a process of its own, `--connections`
  concurrent keep-alive connections, each sending the next knowledge question (the
  expensive path: an embeddings call and retrieval) as soon as the last answer arrives,
  ignoring Retry-After, over `--flood-senders` sender ids (so the per-client limit,
  not the per-conversation one, has to stop it). It starts before the flooded phase's
  customers and stops after them. Its process runs at `nice --flooder-nice` (default
  10): on one 2-core machine the flooder's own CPU would otherwise be the bank's, which
  a real flooder's is not; the requests it sends are as many as it can.

Two fronts, taking turns round by round on the same stack (the rounds pooled, so a
busier minute on a shared machine falls on both phases and both fronts):
`rasa`: the clients call Rasa directly, and Rasa's own limiter refuses the flood (each
429 is a request its one Python event loop handles). `nginx`: the deployed form
(compose, Helm, `ops.scale_out`): nginx from the project's template (ops/nginx.py,
deploy/nginx.conf.j2) in front of the same Rasa, with the same per-client limit
(`limit_req`). Each client then connects from a loopback address of its own (127.0.0.N,
which nginx limits it by; RATE_LIMIT_EXEMPT empty for nginx) and still sends its
X-Forwarded-For address, which nginx appends to and Rasa limits by as well, so both
layers count as in a deployment.

`--client-limits PER_MIN/BURST[/DELAY_S] ...`: the per-client limit (RATE_LIMIT_CLIENT_PER_MIN /
_BURST, Rasa's and nginx's) and how long Rasa holds a refusal (RATE_LIMIT_REFUSAL_DELAY_S),
one stack each; default the product's.

Writes bench/results/flood.md. Outcome asked for: flooded customers' p95 at most 2x
their unloaded p95, the flooder gets 429s (with Retry-After), no customer gets a 429 or
an error.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from assistant.config import RateLimits
from bench import client
from ops import settings, stack
from ops.train import latest_model

RESULTS = settings.ROOT / "bench" / "results" / "flood.md"
QUESTIONS = settings.ROOT / "bench" / "answers" / "development.yml"
CUSTOMER_NET = "198.51.100."  # TEST-NET-2 (RFC 5737): one address per customer
FLOODER = "203.0.113.66"  # TEST-NET-3
# --front nginx: the loopback address each client connects from (nginx limits by it)
FLOODER_LOCAL = "127.0.0.250"


def local_address(front: str, customer: Optional[int] = None) -> Optional[Tuple[str, int]]:
    if front != "nginx":
        return None
    return (FLOODER_LOCAL if customer is None else f"127.0.0.{customer + 2}", 0)
GREETINGS = ["hi", "hello there", "good morning", "hey"]
THANKS = ["thanks", "thank you, that helps", "ok thanks", "great, thank you"]
GOODBYES = ["bye", "that's all, goodbye", "goodbye", "thanks, bye"]
WARMUP_TURNS = 12
# The flooded phase's first seconds, reported apart: the flooder's burst (the per-client
# bucket's `client_burst` messages, all let through at once) lands in them.
EARLY_S = 10.0


def knowledge_questions() -> List[str]:
    """The development fact set's answerable questions (bench/answers/development.yml),
    plus the issue's example; shuffled with a fixed seed."""
    items = yaml.safe_load(QUESTIONS.read_text())["answerable"]
    questions = ["how long does a new card take to arrive?"] + [item["question"] for item in items]
    rng = random.Random(19)
    rng.shuffle(questions)
    return questions


def customer_script(index: int, turns: int, questions: Sequence[str], conversation: int) -> client.Script:
    """One conversation: a greeting, knowledge questions with a thanks now and then, a goodbye."""
    script: client.Script = [("greeting", GREETINGS[(index + conversation) % len(GREETINGS)])]
    q = (index * 7 + conversation * 3) % len(questions)
    while len(script) < max(1, turns - 1):
        if len(script) % 3 == 0:
            script.append(("thanks", THANKS[(index + len(script)) % len(THANKS)]))
        else:
            script.append(("knowledge", questions[q % len(questions)]))
            q += 1
    if turns > 1:
        script.append(("goodbye", GOODBYES[(index + conversation) % len(GOODBYES)]))
    return script[:turns]


@dataclass
class CustomerTurn:
    customer: int
    sender: str
    kind: str
    text: str
    started: float  # seconds since the phase began
    latency_ms: float
    status: Optional[int]
    ok: bool
    failure: str = ""
    retry_after: Optional[str] = None


async def customer(session, url: str, index: int, phase: str, stamp: str, args, questions: Sequence[str],
                   deadline: float, began: float, rng: random.Random) -> List[CustomerTurn]:
    """One customer, conversation after conversation, until `deadline` (monotonic)."""
    import aiohttp

    address = f"{CUSTOMER_NET}{index + 1}"
    turns: List[CustomerTurn] = []
    conversation = 0
    while time.monotonic() < deadline:
        sender = f"flood-{stamp}-{phase}-c{index}-{conversation}"
        for kind, text in customer_script(index, args.turns, questions, conversation):
            await asyncio.sleep(rng.uniform(*args.think))
            if time.monotonic() >= deadline:
                break
            started = time.monotonic()
            turn = CustomerTurn(index, sender, kind, text, started - began, 0.0, None, False)
            try:
                async with session.post(url, json={"sender": sender, "message": text},
                                        headers={"X-Forwarded-For": address}) as response:
                    turn.status = response.status
                    turn.retry_after = response.headers.get("Retry-After")
                    raw = await response.read()
                reply = json.loads(raw) if raw else None
                turn.ok = client.is_reply(turn.status, reply)
                if not turn.ok:
                    turn.failure = f"http {turn.status}" if turn.status != 200 else "empty reply"
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
                turn.failure = type(error).__name__
            turn.latency_ms = (time.monotonic() - started) * 1000
            turns.append(turn)
            if turn.ok and client.hands_off(reply):
                break  # the bot waits for a person: a new conversation
        conversation += 1
    return turns


async def customers(url: str, phase: str, stamp: str, args, questions: Sequence[str], front: str
                    ) -> List[CustomerTurn]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=args.timeout)
    sessions = [aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(
        limit=0, local_addr=local_address(front, i))) for i in range(args.customers)]
    try:
        began = time.monotonic()
        deadline = began + args.seconds
        results = await asyncio.gather(*[
            customer(sessions[i], url, i, phase, stamp, args, questions, deadline, began, random.Random(f"{i}"))
            for i in range(args.customers)
        ])
    finally:
        for session in sessions:
            await session.close()
    return [turn for turns in results for turn in turns]


# --- the flooder (a process of its own) ---------------------------------------------------


def flooder_process(url: str, connections: int, senders: int, nice: int, stamp: str, front: str,
                    started, stop, results) -> None:
    """Send as fast as `connections` connections can until `stop` is set; put the counts in `results`."""
    if nice:
        os.nice(nice)
    results.put(asyncio.run(_flood(url, connections, senders, stamp, front, started, stop)))


async def _flood(url: str, connections: int, senders: int, stamp: str, front: str, started, stop
                 ) -> Dict[str, Any]:
    import aiohttp

    questions = knowledge_questions()
    statuses: Counter = Counter()
    retry_after = Counter()  # 429s with / without the header
    errors: Counter = Counter()
    ok_latency: List[float] = []
    sent = 0
    headers = {"X-Forwarded-For": FLOODER}

    async def connection(worker: int) -> None:
        nonlocal sent
        n = worker
        while not stop.is_set():
            body = {"sender": f"flooder-{stamp}-{n % senders}", "message": questions[n % len(questions)]}
            n += connections
            t0 = time.monotonic()
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
                    statuses[response.status] += 1
                    if response.status == 429:
                        retry_after["with" if response.headers.get("Retry-After") else "without"] += 1
                    elif response.status == 200:
                        ok_latency.append((time.monotonic() - t0) * 1000)
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                errors[type(error).__name__] += 1
            sent += 1
            if sent == 1:
                started.set()

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=connections,
                                                                    local_addr=local_address(front))) as session:
        began = time.monotonic()
        await asyncio.gather(*[connection(w) for w in range(connections)])
        wall = time.monotonic() - began
    return {"sent": sent, "statuses": {str(k): v for k, v in statuses.items()}, "retry_after": dict(retry_after),
            "errors": dict(errors), "wall_s": wall, "ok_latency": ok_latency}


# --- the run ------------------------------------------------------------------------------


def figures(turns: Sequence[CustomerTurn]) -> Dict[str, float]:
    latencies = [t.latency_ms for t in turns]
    return {"turns": len(turns), "p50": client.percentile(latencies, 0.5), "p95": client.percentile(latencies, 0.95),
            "p99": client.percentile(latencies, 0.99), "max": max(latencies) if latencies else float("nan")}


def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def warm_up(url: str, questions: Sequence[str]) -> None:
    """A few turns from loopback (exempt): the models and the generator's embeddings warm."""
    for i in range(WARMUP_TURNS):
        text = GREETINGS[i % len(GREETINGS)] if i % 4 == 0 else questions[-1 - i]
        stack.post(url, json.dumps({"sender": f"flood-warmup-{i % 3}", "message": text}).encode())


def flood_phase(url: str, phase: str, stamp: str, args, questions: Sequence[str], front: str
                ) -> Tuple[List[CustomerTurn], Dict[str, Any]]:
    """The customers while the flooder (a process of its own) runs; (their turns, the flooder's counts)."""
    context = multiprocessing.get_context("spawn")
    started, stop, results = context.Event(), context.Event(), context.Queue()
    flooder = context.Process(target=flooder_process, args=(
        url, args.connections, args.flood_senders, args.flooder_nice, f"{stamp}-{phase}", front, started, stop,
        results))
    flooder.start()
    try:
        if not started.wait(60):
            raise SystemExit("the flooder did not start")
        turns = asyncio.run(customers(url, phase, stamp, args, questions, front))
    finally:
        stop.set()
        counts = results.get(timeout=120)
        flooder.join(30)
    return turns, counts


def run(args, limits: RateLimits) -> Dict[str, Any]:
    model = Path(args.model) if args.model else latest_model()
    if model is None:
        raise SystemExit("no model in models/: run `make train`")
    # Written out, so a RATE_LIMIT_* in this shell cannot change them.
    rate_env = {
        "RATE_LIMIT_SENDER_PER_MIN": f"{limits.sender_per_min:g}", "RATE_LIMIT_SENDER_BURST": str(limits.sender_burst),
        "RATE_LIMIT_CLIENT_PER_MIN": f"{limits.client_per_min:g}", "RATE_LIMIT_CLIENT_BURST": str(limits.client_burst),
        "RATE_LIMIT_EXEMPT": "127.0.0.0/8 ::1", "RATE_LIMIT_TRUSTED_PROXIES": "127.0.0.0/8 ::1",
        "RATE_LIMIT_REFUSAL_DELAY_S": f"{limits.refusal_delay_s:g}",
    }
    questions = knowledge_questions()
    stamp = f"{int(time.time())}"
    out: Dict[str, Any] = {"model": model.name, "rate_env": rate_env, "load": [],
                           "fronts": {front: {"unloaded": [], "flooded": [], "flooders": []} for front in args.front}}
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        work = Path(tmp)
        from assistant import bank

        bank_url = f"sqlite:///{work / 'bank.db'}"
        bank.seed(bank_url)
        gen_port, actions_port, rasa_port = stack.free_ports(3)
        services = [
            stack.generator_service(gen_port, work),
            stack.actions_service(actions_port, work, env={"GENERATOR_URL": f"http://127.0.0.1:{gen_port}/v1",
                                                           "BANK_DB_URL": bank_url}),
            stack.rasa_service(rasa_port, work, model, stack.endpoints_for(actions_port, work),
                               env={"TRACKER_STORE_URL": f"sqlite:///{work / 'tracker.db'}", "LOCK_STORE_URL": "",
                                    "EVENT_BROKER_URL": "", "SANIC_WORKERS": "1", **rate_env},
                               interface="127.0.0.1"),
        ]
        stages = [services]
        urls = {"rasa": f"http://127.0.0.1:{rasa_port}/webhooks/rest/webhook"}
        if "nginx" in args.front:
            from ops import nginx

            port = stack.free_port()
            front_limits = RateLimits(client_per_min=limits.client_per_min, client_burst=limits.client_burst,
                                      exempt=())
            stages.append([nginx.nginx_service(work / "nginx", port, nginx.nginx_config(
                work / "nginx", port, [rasa_port], rate_limit=front_limits))])
            urls["nginx"] = f"http://127.0.0.1:{port}/webhooks/rest/webhook"
        with stack.running(*stages):
            warm_up(urls["rasa"], questions)
            for round_ in range(1, args.rounds + 1):
                for front in args.front:
                    got = out["fronts"][front]
                    before = load_average()
                    print(f"round {round_}, {front}: unloaded, {args.customers} customers for {args.seconds:g} s ...",
                          flush=True)
                    got["unloaded"] += asyncio.run(customers(urls[front], f"r{round_}-{front}-unloaded", stamp,
                                                             args, questions, front))
                    # the customers' and the flooder's buckets are full again (a flooded phase spent the
                    # flooder's; 10 s refill it)
                    time.sleep(2)
                    print(f"round {round_}, {front}: flooded, the same customers and a flooder with "
                          f"{args.connections} connections ...", flush=True)
                    turns, counts = flood_phase(urls[front], f"r{round_}-{front}-flooded", stamp, args, questions,
                                                front)
                    got["flooded"] += turns
                    got["flooders"].append(counts)
                    out["load"].append((f"round {round_}, {front}", before, load_average()))
                    print(f"  customers p95 unloaded {figures(got['unloaded'])['p95']:.0f} ms, flooded "
                          f"{figures(got['flooded'])['p95']:.0f} ms so far; flooder {counts['sent']} sent, "
                          f"{counts['statuses']}", flush=True)
                    time.sleep(12)
    return out


def client_limits(text: str) -> RateLimits:
    """"PER_MIN/BURST[/DELAY]": the product's defaults with this per-client limit (and
    refusal delay, RATE_LIMIT_REFUSAL_DELAY_S)."""
    try:
        per_min, burst, *delay = text.split("/")
        if len(delay) > 1:
            raise ValueError(text)
        return RateLimits(client_per_min=float(per_min), client_burst=int(burst),
                          refusal_delay_s=float(delay[0]) if delay else RateLimits.refusal_delay_s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: PER_MIN/BURST[/DELAY_S], e.g. 600/120 or 120/20/0") from None


def limits_key(limits: RateLimits) -> str:
    """PER_MIN/BURST/DELAY_S, as --client-limits takes it."""
    return f"{limits.client_per_min:g}/{limits.client_burst}/{limits.refusal_delay_s:g}"


def limits_name(limits: RateLimits) -> str:
    return (f"per client {limits.client_per_min:g}/min, burst {limits.client_burst}, refusals held "
            f"{limits.refusal_delay_s:g} s" + (" (the product's default)" if limits == RateLimits() else ""))


def failures(turns: Sequence[CustomerTurn], phase: str) -> List[str]:
    return [f"{phase}: customer {t.customer} ({t.sender}, {t.kind}, {t.started:.1f} s into the phase): {t.failure}"
            + (f", Retry-After {t.retry_after}" if t.retry_after else "") for t in turns if not t.ok]


def row(label: str, f: Dict[str, float], errors: Any = "") -> str:
    return (f"| {label} | {f['turns']} | {f['p50']:.0f} | {f['p95']:.0f} | {f['p99']:.0f} | {f['max']:.0f} "
            f"| {errors} |")


def front_figures(got: Dict[str, Any], customers_n: int) -> Dict[str, Any]:
    unloaded, flooded = got["unloaded"], got["flooded"]
    u, f = figures(unloaded), figures(flooded)
    floods = got["flooders"]
    statuses: Counter = Counter()
    errors: Counter = Counter()
    for counts in floods:
        statuses.update(counts["statuses"])
        errors.update(counts["errors"])
    wall = sum(c["wall_s"] for c in floods)
    sent = sum(c["sent"] for c in floods)
    ok_latency = [x for c in floods for x in c["ok_latency"]]
    per_customer = []
    for i in range(customers_n):
        mine_u = figures([t for t in unloaded if t.customer == i])["p95"]
        mine_f = figures([t for t in flooded if t.customer == i])["p95"]
        per_customer.append(mine_f / mine_u if mine_u else float("nan"))
    failed = failures(unloaded, "unloaded") + failures(flooded, "flooded")
    refused = statuses.get("429", 0)
    with_header = sum(c["retry_after"].get("with", 0) for c in floods)
    ratio = f["p95"] / u["p95"] if u["p95"] else float("nan")
    return {
        "u": u, "f": f, "ratio": ratio, "p50_ratio": f["p50"] / u["p50"] if u["p50"] else float("nan"),
        "early": figures([t for t in flooded if t.started < EARLY_S]),
        "later": figures([t for t in flooded if t.started >= EARLY_S]),
        "within": sum(r <= 2 for r in per_customer), "worst": max(per_customer),
        "failed": failed, "customer_429": sum(t.status == 429 for t in list(unloaded) + list(flooded)),
        "sent": sent, "wall": wall, "served": statuses.get("200", 0), "refused": refused,
        "with_header": with_header, "other": {k: v for k, v in statuses.items() if k not in ("200", "429")},
        "errors": dict(errors), "ok_p50": client.percentile(ok_latency, 0.5),
        "ok_p95": client.percentile(ok_latency, 0.95),
        "met": ratio <= 2 and refused > 0 and not failed and with_header == refused,
    }


def report(outs: List[Tuple[RateLimits, Dict[str, Any]]], args, started: str, wall_s: float
           ) -> Tuple[str, Dict[str, Any]]:
    default = RateLimits()
    command = (f"`.venvs/rasa/bin/python -m bench.flood --customers {args.customers} --turns {args.turns} "
               f"--seconds {args.seconds:g} --rounds {args.rounds} --think {args.think[0]:g} {args.think[1]:g} "
               f"--connections {args.connections} --flood-senders {args.flood_senders} "
               f"--flooder-nice {args.flooder_nice} --front {' '.join(args.front)} --client-limits "
               + " ".join(limits_key(limits) for limits, _ in outs)
               + (f" --model {args.model}" if args.model else "") + "`")
    lines = [
        "# Flood test (latest run)",
        "",
        f"{command} on {started}, {wall_s / 60:.1f} min in all, model `{outs[0][1]['model']}`, on this machine: "
        f"{os.cpu_count()} CPU cores shared with other jobs (load averages below).",
        "",
        "One embedded stack (`rasa run`, one Sanic worker, SQLite tracker store, in-memory locks; the action server; "
        "the CPU generator for embeddings) per per-client limit below, with the product's other rate limits at "
        f"their defaults: per conversation {default.sender_per_min:g} messages a minute, burst "
        f"{default.sender_burst} (`RATE_LIMIT_*`, README's configuration table; the per-client default is "
        f"{default.client_per_min:g} requests a minute, burst {default.client_burst}); loopback exempt and trusted "
        "as the proxy, so every client sends from loopback with its own `X-Forwarded-For` address, as through a "
        "local nginx, and Rasa limits it as that address.",
        "",
        "- `rasa`: the clients call Rasa directly; Rasa's own limiter answers every refused request (in its one "
        "Python event loop).",
        "- `nginx`: the deployed form (compose, Helm, `ops.scale_out`): nginx from the project's template "
        "(`ops/nginx.py`, `deploy/nginx.conf.j2`) in front of the same Rasa with the same per-client limit "
        "(`limit_req`, 429 with Retry-After); each client connects to nginx from a loopback address of its own "
        f"(127.0.0.N: customers .2 and up, the flooder {FLOODER_LOCAL}), which nginx limits it by; Rasa's limits "
        "apply behind it as well.",
        f"- customers: {args.customers}, each its own address ({CUSTOMER_NET}1–{args.customers}), conversations of "
        f"{args.turns} turns (a greeting, knowledge questions from `bench/answers/development.yml` with a thanks "
        f"every third turn, a goodbye), a pause of {args.think[0]:g}–{args.think[1]:g} s before each message, "
        f"for {args.seconds:g} s alone (unloaded), then {args.seconds:g} s again while the flooder runs (flooded); "
        f"{args.rounds} round(s) per front, the fronts taking turns, the rounds pooled.",
        f"- flooder: one address ({FLOODER}), its own process at nice {args.flooder_nice} (on this one machine its "
        f"CPU would otherwise be the bank's, which a real flooder's is not), {args.connections} concurrent "
        "keep-alive connections each sending the next knowledge question as soon as the last answer arrives, "
        f"ignoring Retry-After, spread over {args.flood_senders} sender ids (so the per-client limit must stop "
        "it); started before the flooded phase's customers, stopped after them. Its first requests up to the "
        f"per-client burst are let through at once: the flooded phase's first {EARLY_S:g} s are shown apart too.",
        "",
        "Customers' REST latency in ms, send to reply:",
        "",
        "| per-client limit | front, phase | turns | p50 | p95 | p99 | max | customer errors (429 or other) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    summary: Dict[str, Any] = {}
    for limits, out in outs:
        name = limits_name(limits)
        for front in args.front:
            s = summary[f"{limits_key(limits)} {front}"] = front_figures(
                out["fronts"][front], args.customers)
            lines += [
                row(f"{name} | {front}, unloaded", s["u"], len([x for x in s["failed"] if x.startswith("unloaded")])),
                row(f"{name} | {front}, flooded", s["f"], len([x for x in s["failed"] if x.startswith("flooded")])),
                row(f"{name} | {front}, flooded, first {EARLY_S:g} s", s["early"]),
                row(f"{name} | {front}, flooded, after {EARLY_S:g} s", s["later"]),
            ]
    failed = []
    for limits, out in outs:
        name = limits_name(limits)
        lines += ["", f"### {name}", "", "Load average 1 / 5 / 15 min before each round's unloaded phase → after its "
                  "flooded one: " + "; ".join(f"{n}: {a} → {b}" for n, a, b in out["load"]) + "."]
        for front in args.front:
            s = summary[f"{limits_key(limits)} {front}"]
            failed += [f"{name}, {front}, {x}" for x in s["failed"]]
            lines += [
                "",
                f"- **{front}**: flooded / unloaded p95 **{s['ratio']:.2f}x** (p50 {s['p50_ratio']:.2f}x); each "
                f"customer's own p95: {s['within']} of {args.customers} within 2x (worst {s['worst']:.2f}x); "
                f"customers' 429s: {s['customer_429']}. Flooder: {s['sent']} requests in {s['wall']:.1f} s "
                f"({s['sent'] / s['wall']:.0f}/s): {s['served']} answered (200, {s['served'] / s['wall']:.1f}/s; "
                f"p50 {s['ok_p50']:.0f} ms, p95 {s['ok_p95']:.0f} ms), {s['refused']} refused with 429 "
                f"({s['with_header']} with Retry-After)"
                + "".join(f", {n} × {k}" for k, n in sorted(s["other"].items()))
                + "".join(f", {n} × {e}" for e, n in sorted(s["errors"].items()))
                + ". Outcome (flooded p95 ≤ 2x unloaded, the flooder gets 429s with Retry-After, no customer "
                f"error): **{'met' if s['met'] else 'not met'}**.",
            ]
    if failed:
        lines += ["", "Customers' failed turns:", ""] + [f"- {x}" for x in failed]
    return "\n".join(lines) + "\n", summary


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--turns", type=int, default=10, help="turns of one customer's conversation")
    parser.add_argument("--seconds", type=float, default=30, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=2, help="unloaded + flooded rounds per front, pooled")
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 3.0), metavar=("MIN", "MAX"),
                        help="a customer's pause before each message, seconds (uniform)")
    parser.add_argument("--connections", type=int, default=8, help="the flooder's concurrent connections")
    parser.add_argument("--flood-senders", type=int, default=500, help="sender ids the flooder spreads over")
    parser.add_argument("--flooder-nice", type=int, default=10, help="the flooder process's niceness (0: none)")
    parser.add_argument("--front", nargs="+", choices=("rasa", "nginx"), default=["rasa", "nginx"],
                        help="clients call Rasa directly, and/or nginx with the per-client limit in front of it")
    default = RateLimits()
    parser.add_argument("--client-limits", nargs="+", type=client_limits, metavar="PER_MIN/BURST",
                        default=None, help="RATE_LIMIT_CLIENT_PER_MIN/_BURST of Rasa and nginx, one stack "
                        f"each (default: the product's, {default.client_per_min:g}/{default.client_burst})")
    parser.add_argument("--model", default=None, help="the Rasa model (default: the newest in models/)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds a customer waits for one reply")
    parser.add_argument("--no-write", action="store_true", help="print, don't write bench/results/flood.md")
    args = parser.parse_args(argv)
    started, began = time.strftime("%Y-%m-%d %H:%M %Z"), time.monotonic()
    args.client_limits = args.client_limits or [RateLimits()]
    outs = []
    for limits in args.client_limits:
        print(f"{limits_name(limits)}: a stack of its own ...", flush=True)
        outs.append((limits, run(args, limits)))
    text, _ = report(outs, args, started, time.monotonic() - began)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
