"""Build the knowledge index offline: embed the pages' passages, their sentences, their
example questions (front matter `questions:` and `facts:`) and the NLU examples into
build/knowledge/index.npz (assistant/knowledge.py reads it).

    .venvs/generator/bin/python -m assistant.knowledge build     # with the generator's own code
    python -m assistant.knowledge build --url http://127.0.0.1:8000/v1
    python -m assistant.knowledge check   # exit 1 when missing or stale
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import List, Optional

import numpy as np

from assistant import settings
from assistant.knowledge import (
    EMBED_BATCH, Embedder, KnowledgeIndex, digest, fact_rows, load_current, load_examples, load_facts,
    load_page_intents, load_passages, unit,
)


def _embed_all(embed: Embedder, texts: List[str], dims: int = 0) -> np.ndarray:
    if not texts:
        return np.zeros((0, dims), np.float32)
    return unit(np.concatenate([embed(texts[i : i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]))


def build(embed: Embedder, directory: Path = settings.KNOWLEDGE_DIR, model: str = settings.EMBEDDINGS_MODEL,
          nlu_file: Path = settings.KNOWLEDGE_EXAMPLES) -> KnowledgeIndex:
    passages = load_passages(directory)
    source_digest = digest(directory, nlu_file)
    vectors = _embed_all(embed, [p.embedding_text() for p in passages])
    examples = load_examples(directory, nlu_file)
    facts = load_facts(directory)  # questions about one sentence: examples of its page too
    example_sentences = [-1] * len(examples) + fact_rows(passages, facts)
    examples += [(question, page, False) for question, page, _ in facts]
    example_vectors = _embed_all(embed, [text for text, _, _ in examples], vectors.shape[1])
    sentences = [(row, text) for row, passage in enumerate(passages) for text in passage.sentence_texts()]
    sentence_vectors = _embed_all(embed, [text for _, text in sentences], vectors.shape[1])
    return KnowledgeIndex(passages, vectors, model, source_digest, [page for _, page, _ in examples], example_vectors,
                          load_page_intents(directory), [row for row, _ in sentences], sentence_vectors,
                          [nlu for _, _, nlu in examples], example_sentences)


# -- the build command --------------------------------------------------------------


def local_embedder() -> Embedder:
    """The generator's own embedding code (generator venv only), fully offline."""
    from generator.embeddings import SentenceTransformerEngine
    from generator.settings import Settings, force_offline

    force_offline()
    engine = SentenceTransformerEngine.load(Settings.from_env())
    return lambda texts: engine.embed(texts).vectors


def http_embedder(base_url: str, model: str = settings.EMBEDDINGS_MODEL, timeout: float = 120) -> Embedder:
    """A running OpenAI-compatible server's /v1/embeddings."""

    def embed(texts: List[str]) -> np.ndarray:
        body = json.dumps({"model": model, "input": texts}).encode()
        headers = {"Content-Type": "application/json"}
        if settings.EMBEDDINGS_API_KEY:
            headers["Authorization"] = f"Bearer {settings.EMBEDDINGS_API_KEY}"
        request = urllib.request.Request(f"{base_url.rstrip('/')}/embeddings", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = sorted(json.loads(response.read())["data"], key=lambda item: item["index"])
        return np.array([item["embedding"] for item in data], dtype=np.float32)

    return embed


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.knowledge", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="embed the pages into the index (skipped when up to date)")
    build_cmd.add_argument("--url", help="embed through this OpenAI-compatible base URL (…/v1) "
                                         "instead of the generator's code in this venv")
    build_cmd.add_argument("--force", action="store_true", help="rebuild even when up to date")
    sub.add_parser("check", help="exit 1 when the index is missing or stale")
    args = parser.parse_args(argv)
    path = settings.KNOWLEDGE_INDEX

    index, why = load_current(path)
    if args.command == "check":
        print(f"knowledge index: {'up to date' if index else why}")
        return 0 if index else 1
    if index is not None and not args.force:
        print(f"knowledge index {path} is up to date ({len(index.passages)} passages)")
        return 0
    embed = http_embedder(args.url) if args.url else local_embedder()
    index = build(embed)
    index.save(path)
    print(f"knowledge index {path}: {len(index.passages)} passages ({len(index.sentence_rows)} sentences) "
          f"from {len(index.titles)} pages, {len(index.example_pages)} example questions, {index.vectors.shape[1]} dimensions ({index.model})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
