"""The servers bench/generator.py compares, each started in its own process group:
(a) a naive server (model.generate per request under a lock; `python -m
bench.generator_servers PORT`), (b) `transformers serve --continuous-batching`, (c) this
project's generator and measured variants of it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "models" / "generator" / "SmolLM2-135M-Instruct"


def serve_naive(port: int, threads: int) -> None:
    """The seed's approach as a server: one generate() at a time, streamed as it goes."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32).eval()
    lock = threading.Lock()
    app = FastAPI()

    class Pusher(BaseStreamer):
        def __init__(self, loop, queue):
            self.loop, self.queue, self.tokens, self.sent, self.prompt_seen = loop, queue, [], 0, False

        def put(self, value):
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            self.tokens.extend(value.reshape(-1).tolist())
            text = tokenizer.decode(self.tokens, skip_special_tokens=True)
            if len(text) > self.sent and not text.endswith("\ufffd"):
                self.loop.call_soon_threadsafe(self.queue.put_nowait, ("delta", text[self.sent:]))
                self.sent = len(text)

        def end(self):
            pass

    async def chat(request):  # a plain Starlette route: no FastAPI parameter parsing
        body = await request.json()
        inputs = tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        prompt_len = inputs["input_ids"].shape[1]
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        streamer = Pusher(loop, queue)

        def run():
            try:
                with lock, torch.inference_mode():
                    out = model.generate(**inputs, max_new_tokens=body.get("max_tokens", 60), do_sample=False,
                                         pad_token_id=tokenizer.pad_token_id, streamer=streamer)
                loop.call_soon_threadsafe(queue.put_nowait, ("done", out.shape[1] - prompt_len))
            except Exception as exc:  # reported in the stream
                loop.call_soon_threadsafe(queue.put_nowait, ("error", str(exc)))

        threading.Thread(target=run, daemon=True).start()

        async def events():
            while True:
                kind, value = await queue.get()
                if kind == "delta":
                    yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': value}}]})}\n\n"
                elif kind == "done":
                    usage = {"prompt_tokens": prompt_len, "completion_tokens": value}
                    yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n"
                    return
                else:
                    yield f"data: {json.dumps({'error': {'message': value}})}\n\n"
                    return

        return StreamingResponse(events(), media_type="text/event-stream")

    app.router.add_route("/v1/chat/completions", chat, methods=["POST"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- servers ------------------------------------------------------------------------

@dataclass
class Server:
    name: str
    label: str
    command: list[str]
    env: dict[str, str]
    model: str | None = None  # the "model" field the server expects
    ready_path: str | None = None  # polled until 200 after the port opens
    levels: tuple[int, ...] | None = None  # None: every level of the run
    note: str = ""
    process: subprocess.Popen | None = None
    url: str = ""

    def start(self, port: int, timeout: float = 180.0) -> None:
        self.url = f"http://127.0.0.1:{port}"
        log = open(Path(tempfile.gettempdir()) / f"bench-generator-{self.name}.log", "w")
        self.process = subprocess.Popen(self.command, cwd=ROOT, env={**os.environ, **self.env},
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {log.name}")
            try:
                if self.ready_path:
                    if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                        return
                else:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        return
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not open port {port} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and its children
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def rss_mb(self) -> float:
        try:
            proc = psutil.Process(self.process.pid)
            return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20
        except psutil.Error:
            return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def servers(threads: int, max_batch: int, max_queue: int) -> dict[str, Server]:
    python = sys.executable
    omp = {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cli = str(Path(python).parent / "transformers")
    service_env = {**omp, "GENERATOR_THREADS": str(threads), "GENERATOR_PORT": "{port}",
                   "GENERATOR_MAX_BATCH": str(max_batch), "GENERATOR_MAX_QUEUE": str(max_queue),
                   "GENERATOR_LOG_LEVEL": "warning"}
    return {
        "naive": Server("naive", "(a) naive: model.generate per request, under a lock",
                        [python, "-m", "bench.generator_servers", "{port}", "--threads", str(threads)],
                        omp),
        "serve": Server("serve", "(b) transformers serve --continuous-batching",
                        [cli, "serve", str(MODEL_DIR), "--continuous-batching", "--device", "cpu",
                         "--dtype", "float32", "--host", "127.0.0.1", "--port", "{port}",
                         "--cb-num-blocks", "128"], omp, model=str(MODEL_DIR),
                        note="--cb-num-blocks 128 (64 would do): by default its paged cache takes 60 % of RAM "
                             "(14 GB RSS here), which this shared machine cannot spare"),
        "service": Server("service", "(c) this service (python -m generator), fp32: the default",
                          [python, "-m", "generator"], service_env, ready_path="/health"),
        # Measured variants of (c): what the options buy.
        "service-bf16": Server("service-bf16", "(c) with GENERATOR_DTYPE=bfloat16",
                               [python, "-m", "generator"], {**service_env, "GENERATOR_DTYPE": "bfloat16"},
                               ready_path="/health", levels=(1, 16)),
        "service-no-prefix": Server("service-no-prefix", "(c) with GENERATOR_PREFIX_CACHE_ENTRIES=0 "
                                    "(the system prompt is computed for every request)",
                                    [python, "-m", "generator"],
                                    {**service_env, "GENERATOR_PREFIX_CACHE_ENTRIES": "0"},
                                    ready_path="/health", levels=(16,)),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.generator_servers", description="the naive server (a)")
    parser.add_argument("port", type=int)
    parser.add_argument("--threads", type=int, default=1)
    cli = parser.parse_args()
    serve_naive(cli.port, cli.threads)
