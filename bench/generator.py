"""Generator benchmark: the naive per-request server, `transformers serve
--continuous-batching` and this project's generator service, side by side in one run.

Each server is started here on a free loopback port with the same model (the
SmolLM2-135M-Instruct safetensors cache), the same torch thread count and the same
prompts (the action server's system prompt plus a customer question), then driven by
1, 4, 16 and 32 concurrent streaming clients that each send their requests back to
back (greedy, max_tokens 60). Reported per server and level: aggregate tokens/s, time
to first token and latency p50/p95, peak RSS of the server process; then the ratios
of the service to the other two, whether greedy answers are identical to the naive
server's (plain model.generate, fp32), and an overload run at twice the service's
capacity (max_batch + max_queue) that must shed load with 503 + Retry-After.

    .venvs/generator/bin/python -m bench.generator [--quick] [--only naive,serve,service]
        (writes bench/results/generator.md)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.generator_servers import MODEL_DIR, Server, free_port, servers
from generator.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "generator.md"
LEVELS = (1, 4, 16, 32)
MAX_TOKENS = 60

# assistant/prompt.py's SYSTEM_PROMPT for the default bank (copied: the Rasa side
# is another environment).
SYSTEM_PROMPT = (
    "You are the customer support assistant of Lakeside Bank. Answer the customer's last "
    "message in one or two short, polite sentences. Do not invent account details, "
    "balances, fees or dates. If you are not sure, say so and offer to connect the "
    "customer with a person."
)
QUESTIONS = [
    "How do I activate my new card?", "My card was stolen, what should I do?",
    "Why was my transfer declined?", "Can I change my PIN online?",
    "How long does an international transfer take?", "Where can I use my card abroad?",
    "How do I close my account?", "I was charged twice for the same purchase.",
    "What is the exchange rate for euros today?", "My card payment was declined at a shop.",
    "How can I top up my account with cash?", "Why is my balance not updated after a deposit?",
    "I forgot my passcode, how do I reset it?", "Can I get a virtual card?",
    "Is there a fee for withdrawing cash from an ATM?", "How do I verify my identity?",
    "The ATM kept my card, what now?", "Can I cancel a transfer I just made?",
    "How do I add money with Apple Pay?", "My refund has not arrived yet.",
    "Which currencies do you support?", "How do I change my address?",
    "I do not recognise a payment on my statement.", "When will my new card arrive?",
    "Can I have more than one card?", "How do I set up a direct debit?",
    "Why was I charged a fee for a transfer?", "Is my money safe with you?",
    "How do I order a physical card?", "Can I use my card for online shopping?",
    "How do I report a lost phone with the banking app?", "What are your opening hours?",
]


def messages_for(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]


# -- the load -----------------------------------------------------------------------

@dataclass
class Outcome:
    question: int
    status: int = 0  # HTTP status; 0 when no answer came
    ttft: float | None = None
    latency: float = 0.0
    tokens: int = 0
    text: str = ""
    error: str = ""
    retry_after: str | None = None


async def one_request(client: httpx.AsyncClient, server: Server, question: int) -> Outcome:
    body = {"messages": messages_for(question), "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if server.model:
        body["model"] = server.model
    outcome = Outcome(question)
    started = time.perf_counter()
    try:
        await stream_into(outcome, client, server, body, started)
    except httpx.HTTPError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.latency = time.perf_counter() - started
    return outcome


async def stream_into(outcome: Outcome, client: httpx.AsyncClient, server: Server, body: dict,
                      started: float) -> None:
    """Read one streamed completion: status, first content time, text, usage."""
    async with client.stream("POST", f"{server.url}/v1/chat/completions", json=body) as response:
        outcome.status = response.status_code
        if response.status_code != 200:
            outcome.retry_after = response.headers.get("retry-after")
            outcome.error = (await response.aread()).decode(errors="replace")[:200]
            return
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                outcome.error = str(chunk["error"])[:200]
                break
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece and outcome.ttft is None:
                    outcome.ttft = time.perf_counter() - started
                outcome.text += piece
            if chunk.get("usage"):
                outcome.tokens = chunk["usage"]["completion_tokens"]


async def drive(server: Server, clients: int, per_client: int) -> tuple[list[Outcome], float]:
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    timeout = httpx.Timeout(600.0, connect=10.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        async def client_loop(c: int) -> list[Outcome]:
            return [await one_request(client, server, c * per_client + j) for j in range(per_client)]

        started = time.perf_counter()
        results = await asyncio.gather(*(client_loop(c) for c in range(clients)))
        return [o for batch in results for o in batch], time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


@dataclass
class Level:
    clients: int
    outcomes: list[Outcome]
    wall: float
    peak_rss: float
    load: float

    @property
    def ok(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 200 and not o.error]

    @property
    def tokens_per_s(self) -> float:
        return sum(o.tokens for o in self.ok) / self.wall

    def row(self) -> dict[str, float]:
        ttft = [o.ttft for o in self.ok if o.ttft is not None]
        latency = [o.latency for o in self.ok]
        return {"tok/s": self.tokens_per_s, "ttft50": pct(ttft, 50), "ttft95": pct(ttft, 95),
                "lat50": pct(latency, 50), "lat95": pct(latency, 95)}


@dataclass
class Run:
    server: Server
    levels: dict[int, Level] = field(default_factory=dict)
    overload: Level | None = None
    error: str = ""
    start_s: float = 0.0


def measure(server: Server, levels: tuple[int, ...], per_client: int, overload_clients: int,
            deadline: float) -> Run:
    run = Run(server)
    port = free_port()
    server.command = [part.replace("{port}", str(port)) for part in server.command]
    server.env = {k: v.replace("{port}", str(port)) for k, v in server.env.items()}
    started = time.monotonic()
    try:
        server.start(port)
        asyncio.run(drive(server, 1, 1))  # warm-up (and the service's ready check)
        run.start_s = time.monotonic() - started
        for clients in server.levels or levels:
            if time.monotonic() > deadline:
                run.error = f"stopped before {clients} clients: the run's time budget was spent"
                break
            run.levels[clients] = run_level(server, clients, per_client)
            print(f"  {server.name:8s} {clients:3d} clients: {run.levels[clients].row()}", flush=True)
        if overload_clients and time.monotonic() < deadline:
            run.overload = run_level(server, overload_clients, per_client)
            print(f"  {server.name:8s} overload {overload_clients}: "
                  f"{sorted({o.status for o in run.overload.outcomes})}", flush=True)
    except Exception as exc:  # reported in the results, the other servers still run
        run.error = f"{type(exc).__name__}: {exc}"
        print(f"  {server.name}: {run.error}", flush=True)
    finally:
        server.stop()
    return run


def run_level(server: Server, clients: int, per_client: int) -> Level:
    peak, stop = [server.rss_mb()], threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak.append(server.rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    load = os.getloadavg()[0]
    sampler.start()
    try:
        outcomes, wall = asyncio.run(drive(server, clients, per_client))
    finally:
        stop.set()
        sampler.join()
    return Level(clients, outcomes, wall, max(peak), load)


# -- the report ---------------------------------------------------------------------

def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def report(runs: dict[str, Run], args, started: float) -> str:
    lines = [
        "# Generator benchmark", "",
        f"`python -m bench.generator{' --quick' if args.quick else ''}` on {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} CPU cores, SmolLM2-135M-Instruct fp32, torch threads = {args.threads}, "
        f"greedy, max_tokens = {MAX_TOKENS}, streaming clients sending {args.per_client} requests each back to back; "
        f"the service ran with max_batch = {args.max_batch}, max_queue = {args.max_queue}. "
        f"Whole run: {(time.monotonic() - started) / 60:.1f} min.", "",
        "Load = the 1-minute load average when the level started (other work shares this machine; "
        "a level that starts above about 1.5 ran beside other processes).", "",
        "| server | clients | ok/sent | tokens/s | TTFT p50 (s) | TTFT p95 (s) | latency p50 (s) | latency p95 (s) "
        "| peak RSS (MB) | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in runs.items():
        for clients, level in run.levels.items():
            r = level.row()
            lines.append(f"| {name} | {clients} | {len(level.ok)}/{len(level.outcomes)} | {fmt(r['tok/s'], 1)} "
                         f"| {fmt(r['ttft50'])} | {fmt(r['ttft95'])} | {fmt(r['lat50'])} | {fmt(r['lat95'])} "
                         f"| {level.peak_rss:.0f} | {level.load:.2f} |")
    lines += ["", "Servers:", ""]
    for name, run in runs.items():
        extra = f" Note: {run.server.note}." if run.server.note else ""
        failed = f" **Did not complete: {run.error}**" if run.error else ""
        lines.append(f"- {name}: {run.server.label}; start-up to first answer {run.start_s:.0f} s.{extra}{failed}")
    service = runs.get("service")
    if service:
        lines += ["", "## Ratios (service throughput / other throughput; TTFT p95 of the service)", "",
                  "| clients | service / naive | service / transformers serve | service TTFT p95 (s) |",
                  "|---:|---:|---:|---:|"]
        for clients, level in service.levels.items():
            ratios = []
            for other in ("naive", "serve"):
                theirs = runs.get(other) and runs[other].levels.get(clients)
                ok = theirs and theirs.tokens_per_s > 0
                ratios.append(fmt(level.tokens_per_s / theirs.tokens_per_s) + "x" if ok else "n/a")
            lines.append(f"| {clients} | {ratios[0]} | {ratios[1]} | {fmt(level.row()['ttft95'])} |")
        lines += parity(runs)
        lines += overload(service, args)
    return "\n".join(lines) + "\n"


def parity(runs: dict[str, Run]) -> list[str]:
    """Greedy answers compared with the naive server's (plain model.generate, fp32), per question."""
    answers: dict[str, dict[int, str]] = {}
    for name, run in runs.items():
        answers[name] = {}
        for level in run.levels.values():
            for o in level.ok:
                answers[name].setdefault(o.question % len(QUESTIONS), o.text)
    if "naive" not in answers:
        return []
    lines = ["", "## Greedy answers identical to the naive server's (model.generate, fp32)", ""]
    for name in answers:
        if name == "naive":
            continue
        shared = [q for q in answers[name] if q in answers["naive"]]
        same = sum(answers[name][q] == answers["naive"][q] for q in shared)
        lines.append(f"- {name}: {same}/{len(shared)} questions identical")
    return lines


def overload(run: Run, args) -> list[str]:
    level = run.overload
    if level is None:
        return []
    codes: dict[int, int] = {}
    for o in level.outcomes:
        codes[o.status] = codes.get(o.status, 0) + 1
    shed = [o for o in level.outcomes if o.status in (429, 503)]
    lost = [o for o in level.outcomes if o.status == 0 or (o.status == 200 and o.error)]
    latency = [o.latency for o in level.ok]
    with_retry = sum(1 for o in shed if o.retry_after)
    return ["", f"## Overload: {level.clients} clients, twice the service's capacity "
                f"(max_batch {args.max_batch} + max_queue {args.max_queue})", "",
            f"- sent {len(level.outcomes)}; answered by HTTP status: "
            + ", ".join(f"{code}: {count}" for code, count in sorted(codes.items())),
            f"- shed (429/503): {len(shed)}, {with_retry} of them with Retry-After; "
            f"shed answered in p95 {fmt(pct([o.latency for o in shed], 95), 3)} s",
            f"- served: {len(level.ok)}, latency p50 {fmt(pct(latency, 50))} s, p95 {fmt(pct(latency, 95))} s, "
            f"max {fmt(max(latency) if latency else float('nan'))} s; {fmt(level.tokens_per_s, 1)} tokens/s",
            f"- lost (no HTTP answer, or a stream that broke off): {len(lost)}"]


NOTES_MARKER = "<!-- notes: kept when the benchmark rewrites this file -->"
BANKING77 = ROOT.parent / "shared" / "data" / "banking77" / "train.csv"


def perplexities(threads: int, samples: int = 200) -> dict[str, float] | None:
    """Perplexity of Banking77 customer messages after the system prompt, fp32 vs bfloat16."""
    if not BANKING77.is_file():
        return None
    import csv
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    with BANKING77.open() as f:
        texts = [row["text"] for row in csv.DictReader(f)][::50][:samples]
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    system = [{"role": "system", "content": SYSTEM_PROMPT}]
    skip = len(tokenizer.apply_chat_template(system, return_dict=True)["input_ids"])
    result = {}
    for dtype in ("float32", "bfloat16"):
        model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=getattr(torch, dtype)).eval()
        nll, count = 0.0, 0
        with torch.inference_mode():
            for text in texts:
                ids = tokenizer.apply_chat_template([*system, {"role": "user", "content": text}],
                                                    return_tensors="pt", return_dict=True)["input_ids"]
                logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
                picked = logp[torch.arange(ids.shape[1] - 1), ids[0, 1:]][skip - 1:]
                nll -= float(picked.sum())
                count += picked.numel()
        result[dtype] = math.exp(nll / count)
    result["samples"] = len(texts)
    return result


def quality_report(quality: dict[str, float] | None) -> str:
    if not quality:
        return ""
    delta = 100 * (quality["bfloat16"] - quality["float32"]) / quality["float32"]
    return ("\n## bfloat16 against fp32\n\n"
            f"Perplexity of {quality['samples']:.0f} Banking77 customer messages (every 50th of train.csv) after "
            f"the system prompt: fp32 {quality['float32']:.3f}, bfloat16 {quality['bfloat16']:.3f} "
            f"({delta:+.2f} %). Identical greedy answers: see service-bf16 above.\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="naive,serve,service,service-bf16,service-no-prefix",
                        help="comma-separated: naive, serve, service, service-bf16, service-no-prefix")
    parser.add_argument("--no-quality", action="store_true", help="skip the perplexity of fp32 vs bfloat16")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--per-client", type=int, default=2, help="requests each client sends")
    parser.add_argument("--quick", action="store_true", help="one request per client")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=Settings().max_batch)
    parser.add_argument("--max-queue", type=int, default=Settings().max_queue)
    parser.add_argument("--budget-min", type=float, default=20.0, help="stop starting new levels after this")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.per_client = 1
    if not MODEL_DIR.is_dir():
        print(f"{MODEL_DIR} is missing: run `python -m generator.convert` first", file=sys.stderr)
        return 2
    started = time.monotonic()
    deadline = started + args.budget_min * 60
    levels = tuple(int(x) for x in args.levels.split(","))
    chosen = servers(args.threads, args.max_batch, args.max_queue)
    runs: dict[str, Run] = {}
    for name in args.only.split(","):
        print(f"{name}: starting ({os.getloadavg()[0]:.2f} load)", flush=True)
        overload_clients = 2 * (args.max_batch + args.max_queue) if name == "service" else 0
        runs[name] = measure(chosen[name], levels, args.per_client, overload_clients, deadline)
    quality = None if args.no_quality or time.monotonic() > deadline else perplexities(args.threads)
    text = report(runs, args, started) + quality_report(quality)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    notes = ""  # hand-written notes below the marker survive a new run
    if args.out.exists() and NOTES_MARKER in args.out.read_text():
        notes = args.out.read_text().split(NOTES_MARKER, 1)[1]
    args.out.write_text(text + "\n" + NOTES_MARKER + notes)
    print(text)
    return 0 if all(not run.error for run in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
