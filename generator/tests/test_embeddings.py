"""Embeddings against the real all-MiniLM-L6-v2 model."""

from __future__ import annotations

import base64

import numpy as np

SENTENCES = [
    "How do I reset my password?",
    "I forgot my password, how can I change it?",
    "The weather is sunny at the beach today.",
]


def embed(server, **body):
    body.setdefault("model", "all-MiniLM-L6-v2")
    return server.client.post("/v1/embeddings", json=body)


def test_unit_vectors_and_similarity(server):
    r = embed(server, input=SENTENCES)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    vectors = np.array([d["embedding"] for d in body["data"]])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.3
    assert body["usage"]["prompt_tokens"] > 0
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]


def test_single_string_and_base64(server):
    as_float = embed(server, input=SENTENCES[0]).json()["data"]
    as_b64 = embed(server, input=SENTENCES[0], encoding_format="base64").json()["data"]
    assert len(as_float) == len(as_b64) == 1
    decoded = np.frombuffer(base64.b64decode(as_b64[0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, as_float[0]["embedding"], rtol=1e-6)


def test_model_name_is_case_insensitive(server):
    r = embed(server, model="sentence-transformers/ALL-MINILM-L6-V2", input="hello")
    assert r.status_code == 200, r.text
