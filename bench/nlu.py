"""NLU benchmark: full training time, validation accuracy, /model/parse latency, memory.

Trains each configuration from scratch (empty Rasa cache), serves it with
`rasa run --enable-api` on a free loopback port, sends every validation message to
/model/parse one at a time and reports, side by side in one run:
training time, in-scope accuracy and macro F1, out-of-scope recall at the configured
fallback threshold, parse latency p50/p95/p99, and the Rasa process's memory.

    .venvs/rasa/bin/python -m bench.nlu [--only project]   (writes bench/results/nlu.md)
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from ops import evaluate, settings, stack
from ops.data import OUT_OF_SCOPE
from ops.stack import free_port, post

CONFIGS = {
    "baseline: count vectors + Rasa LR": settings.ROOT / "bench" / "configs" / "count_vectors_lr.yml",
    "project: n-grams + MiniLM (ONNX) + tf-idf LR": settings.ROOT / "config.yml",
}
RESULTS = settings.ROOT / "bench" / "results" / "nlu.md"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def train(config: Path, work: Path) -> Dict:
    started = time.monotonic()
    subprocess.run(
        [str(settings.RASA_VENV / "bin" / "rasa"), "train", "--config", str(config),
         "--domain", "domain", "--data", "data", "--out", str(work / "models")],
        cwd=settings.ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**__import__("os").environ, "RASA_CACHE_DIRECTORY": str(work / "cache")},
    )
    return {"train_s": time.monotonic() - started, "model": next((work / "models").glob("*.tar.gz"))}


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def serve_and_parse(model: Path, config: Path, work: Path) -> Dict:
    port = free_port()
    endpoints = work / "endpoints.yml"
    endpoints.write_text("tracker_store:\n  type: addons.tracker_store.EnvSQLTrackerStore\n")
    rasa = stack.rasa_service(
        port, work, model, endpoints, extra_args=["--enable-api"],
        env={"TRACKER_STORE_URL": f"sqlite:///{work / 'tracker.db'}"},
    )
    with stack.running([rasa]):
        url = f"http://127.0.0.1:{port}/model/parse"
        rss_loaded = rss_mb(rasa.process.pid)
        examples = evaluate.load_examples(settings.VALIDATION_FILE)
        for text, _ in examples[:20]:  # warm-up
            post(url, json.dumps({"text": text}).encode())
        latencies, predicted = [], []
        for text, _ in examples:
            started = time.perf_counter()
            status, parsed = post(url, json.dumps({"text": text}).encode())
            latencies.append((time.perf_counter() - started) * 1000)
            assert status == 200, parsed
            ranking = [r for r in parsed["intent_ranking"] if r["name"] != evaluate.FALLBACK]
            predicted.append((ranking[0]["name"], ranking[0]["confidence"]))
        gold = [intent for _, intent in examples]
        summary = evaluate.summarise(gold, predicted)
        threshold = evaluate.fallback_threshold(config) or 0.0
        at = min(summary["thresholds"], key=lambda r: abs(r["threshold"] - threshold))
        return {
            "accuracy": summary["accuracy_in_scope"],
            "macro_f1": summary["macro_f1_in_scope"],
            "threshold": threshold,
            "in_scope_at_threshold": at["in_scope_accuracy"],
            "oos_recall": at["oos_recall"],
            "p50": statistics.median(latencies),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "rss_loaded_mb": rss_loaded,
            "rss_after_mb": rss_mb(rasa.process.pid),
            "parses": len(latencies),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["baseline", "project"], help="run one configuration")
    args = parser.parse_args()
    rows = {}
    for name, config in CONFIGS.items():
        if args.only and not name.startswith(args.only):
            continue
        with tempfile.TemporaryDirectory(prefix="bench-nlu-") as tmp:
            work = Path(tmp)
            print(f"{name}: training ...", flush=True)
            trained = train(config, work)
            print(f"{name}: trained in {trained['train_s']:.0f} s; parsing ...", flush=True)
            rows[name] = {"train_s": trained["train_s"], **serve_and_parse(trained["model"], config, work)}
    lines = [
        "| configuration | full train | in-scope acc. | macro F1 | OOS recall @thr | in-scope @thr | parse p50 | p95 | p99 | Rasa RSS loaded / after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['train_s']:.0f} s | {r['accuracy']:.2%} | {r['macro_f1']:.2%} | "
            f"{r['oos_recall']:.0%} @{r['threshold']:.2f} | {r['in_scope_at_threshold']:.2%} | "
            f"{r['p50']:.1f} ms | {r['p95']:.1f} ms | {r['p99']:.1f} ms | "
            f"{r['rss_loaded_mb']:.0f} / {r['rss_after_mb']:.0f} MB |"
        )
    table = "\n".join(lines)
    print(table)
    if not args.only:
        # sections below the latest run (other NLU measurements, `## ...`) are kept
        existing = RESULTS.read_text() if RESULTS.is_file() else ""
        kept = existing[existing.index("\n## "):] if "\n## " in existing else ""
        RESULTS.write_text(
            "# NLU benchmark (latest run)\n\n"
            f"`.venvs/rasa/bin/python -m bench.nlu` on {time.strftime('%Y-%m-%d')}, "
            f"{len(rows)} configurations, validation split "
            f"`build/validation/nlu.yml`, one client sending /model/parse back to back.\n\n"
            + table + "\n" + kept
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
