"""The knowledge base as retrieval passages, and its embedding index.

knowledge/<id>.md pages (YAML front matter: id, title, intents) are split at their
`##` headings: one section is one passage. The index holds one unit vector per
passage, one per sentence of each passage (with the page title in front), and one per
example question of a page: the customer questions its front matter lists
(`questions:`) and the NLU training examples of the intents it lists
(data/nlu/banking77.yml), all embedded with all-MiniLM-L6-v2, the model the
generator's /v1/embeddings serves. The questions a page lists under `facts:` are about one
of its sentences each (`sentence:`, a verbatim piece of it): they are example questions of
the page, and `fact_similarity` gives each sentence the query's similarity to its own, for
assistant/answers.py to rank the sentence that states the fact asked.

Retrieval scores a passage by a weighted mean of two cosine similarities to the query:
PASSAGE_WEIGHT (0.3) times the passage's own (the better of the whole section's and its
closest sentence's), and 0.7 times the best one among its page's example questions. A
question is much closer to other questions than to a paragraph of facts, so the second
term finds the right page far more often; the first picks the section within the page.
When the plain mean of the two is higher (a question worded like the page's text rather
than like a customer's: "explain how weekend exchange markups work"), that is the score.
An NLU example counts NLU_EXAMPLE_PENALTY (0.06) less than a question the page lists
itself: the NLU examples are written for an intent, and an intent's examples cover more
than its page answers. A question about one fact ("what does the envelope look
like?") matches the sentence that states it much better than the embedding of a whole
section, where that fact is one of many. A page without examples scores by its
passages alone. That score (`Hit.score`) says how much the
knowledge base has to say: the no-knowledge threshold applies to it.

Passages are ranked by that score plus KNOWLEDGE_LEXICAL_WEIGHT times a lexical
score: BM25 of the query's words (stop words left out) over the passages' text,
divided by the best passage's BM25 for that query (0 to 1). Questions about one
specific fact ("what does the envelope look like?", "what is an ARN?") share rare
words with the one passage that states it, which a sentence embedding of a short
question often misses.

When the caller has the NLU's intent ranking for the question (Rasa's
`intent_ranking` of the user message: Banking77 intents with their confidences, the
top 10 kept), a third term adds KNOWLEDGE_INTENT_WEIGHT times the passage's intent
score: the sum of the confidences of the intents its page lists in its front matter
(0 to 1; each intent has one page). The NLU classifier was trained on the Banking77
questions and often knows the topic when the embedding of a short question does not.
The term only reorders passages: the no-knowledge threshold still applies to the
`Hit.score` of the passage ranked first, so the NLU's guess never makes the bot answer
a question the knowledge base has too little to say about (the NLU is confident about
a banking topic for many questions the pages do not answer). Without a ranking the
term is 0 and the order is the one without it.

The index is built ahead of time into build/knowledge/index.npz (about 21 MB; three
to seven minutes on one CPU core), with a digest of the files it was built from:

    .venvs/generator/bin/python -m assistant.knowledge build     # offline, with the generator's own code
    python -m assistant.knowledge build --url http://127.0.0.1:8000/v1
                                        # any venv, through a running OpenAI-compatible /v1/embeddings
    python -m assistant.knowledge check   # exit 1 when missing or stale

`build` does nothing when the index is up to date (--force rebuilds anyway). The
action server reads the index once at start and refuses to start when it is missing
or stale (actions/server.py). At request time it only embeds the query (through the
generator's /v1/embeddings) and takes cosine similarities in numpy.

This module needs only numpy and PyYAML, so both virtual environments can import it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import yaml

from assistant import settings
from assistant.guardrails import SENTENCE_END

# Bump when the way pages become passages (or passages become embedded text) changes:
# an index built by an older version is then stale.
FORMAT_VERSION = 5
EMBED_BATCH = 32
# The relevance score: PASSAGE_WEIGHT * passage similarity + (1 - PASSAGE_WEIGHT) * best
# example question's similarity, where an NLU example counts NLU_EXAMPLE_PENALTY less.
# Chosen on the citation benchmark's development sets (2026-12-03; replaced by bench/answers.py).
PASSAGE_WEIGHT = 0.3
NLU_EXAMPLE_PENALTY = 0.06

Embedder = Callable[[List[str]], np.ndarray]


class KnowledgeError(RuntimeError):
    """The knowledge pages are malformed, or the index cannot be read."""


@dataclass(frozen=True)
class Passage:
    page_id: str
    title: str
    heading: str
    text: str

    def embedding_text(self) -> str:
        """What is embedded: the page title and section heading give a short section its topic."""
        return f"{self.title}. {self.heading}. {self.text}"

    def sentence_texts(self) -> List[str]:
        """What is embedded for each sentence of three words or more: the page title gives it its topic."""
        return [f"{self.title}. {sentence}" for sentence in page_sentences(self)]


@dataclass(frozen=True)
class Hit:
    score: float  # the relevance score: weighted mean of similarity and page_similarity, or their mean if higher
    similarity: float  # cosine similarity to the query: the section's or its closest sentence's, the higher
    page_similarity: float  # best cosine similarity of its page's example questions (NLU ones less the penalty)
    passage: Passage
    row: int  # the passage's row in the index
    lexical: float = 0.0  # BM25 of the query over the passage, relative to the best passage's
    intent: float = 0.0  # NLU confidence of the intents its page lists (summed; 0 without a ranking)


# Words too common to tell passages apart (BM25 would give them little weight anyway;
# leaving them out keeps short questions from matching on "my" and "the").
STOP_WORDS = frozenset(
    "a about am an and any are as at be been but by can could did do does for from get got had has have "
    "how i if in into is it its just me my no not of on or our please so than that the their them there "
    "they this to up was we were what when where which who why will with would you your".split()
)
BM25_K1, BM25_B = 1.2, 0.75


def words(text: str) -> List[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP_WORDS]


class Lexical:
    """Okapi BM25 over the passages (about a hundred: computed when the index is loaded)."""

    def __init__(self, texts: Sequence[str]) -> None:
        docs = [words(t) for t in texts]
        self.vocabulary = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
        counts = np.zeros((len(docs), len(self.vocabulary)), np.float32)
        for row, doc in enumerate(docs):
            for w in doc:
                counts[row, self.vocabulary[w]] += 1
        lengths = counts.sum(axis=1, keepdims=True)
        norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths / max(float(lengths.mean()), 1.0))
        self.weights = counts * (BM25_K1 + 1) / (counts + norm)  # term-frequency part per passage and word
        df = (counts > 0).sum(axis=0)
        self.idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5)).astype(np.float32)

    def scores(self, query: str) -> np.ndarray:
        """BM25 of each passage for the query, divided by the best one (all 0 when no word matches)."""
        columns = sorted({self.vocabulary[w] for w in words(query) if w in self.vocabulary})
        bm25 = self.weights[:, columns] @ self.idf[columns] if columns else np.zeros(len(self.weights), np.float32)
        best = float(bm25.max()) if len(bm25) else 0.0
        return bm25 / best if best > 0 else bm25


def _front_matter(path: Path) -> Tuple[dict, str]:
    text = path.read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, re.S)
    if not match:
        raise KnowledgeError(f"{path}: no YAML front matter (--- ... ---) at the top")
    meta = yaml.safe_load(match.group(1)) or {}
    if meta.get("id") != path.stem or not meta.get("title"):
        raise KnowledgeError(f"{path}: front matter needs id: {path.stem} and a title")
    return meta, match.group(2)


def page_files(directory: Path) -> List[Path]:
    return sorted(p for p in directory.glob("*.md") if p.name.lower() != "readme.md")


def split_page(path: Path) -> List[Passage]:
    """One passage per `##` section; text before the first heading, if any, is ignored."""
    meta, body = _front_matter(path)
    passages = []
    for section in re.split(r"^## +", body, flags=re.M)[1:]:
        heading, _, text = section.partition("\n")
        text = " ".join(text.split())
        if text:
            passages.append(Passage(meta["id"], str(meta["title"]).strip(), heading.strip(), text))
    if not passages:
        raise KnowledgeError(f"{path}: no `##` sections")
    return passages


def load_passages(directory: Path = settings.KNOWLEDGE_DIR) -> List[Passage]:
    files = page_files(directory)
    if not files:
        raise KnowledgeError(f"no knowledge pages in {directory}")
    return [passage for path in files for passage in split_page(path)]


def load_page_intents(directory: Path = settings.KNOWLEDGE_DIR) -> Dict[str, List[str]]:
    """{page id: [intent, ...]} from the pages' front matter."""
    intents = {}
    for path in page_files(directory):
        meta, _ = _front_matter(path)
        intents[meta["id"]] = [str(intent) for intent in meta.get("intents") or []]
    return intents


# Rasa's intent_ranking: [{"name": intent, "confidence": 0..1}, ...]
IntentRanking = Sequence[Mapping[str, Any]]


def load_examples(directory: Path = settings.KNOWLEDGE_DIR, nlu_file: Path = settings.KNOWLEDGE_EXAMPLES
                  ) -> List[Tuple[str, str, bool]]:
    """(question, page id, from the NLU file): the questions each page lists in its front
    matter, and every NLU example of an intent that a page lists (none without the NLU file)."""
    page_of, examples = {}, []
    for path in page_files(directory):
        meta, _ = _front_matter(path)
        for intent in meta.get("intents") or []:
            page_of[intent] = meta["id"]
        examples += [(" ".join(str(q).split()), meta["id"], False) for q in meta.get("questions") or []
                     if str(q).strip()]
    if not nlu_file.exists():
        return examples
    for block in (yaml.safe_load(nlu_file.read_text(encoding="utf-8")) or {}).get("nlu") or []:
        page = page_of.get(block.get("intent"))
        if page is None:
            continue
        for line in str(block.get("examples") or "").splitlines():
            text = line.strip()[2:].strip() if line.strip().startswith("- ") else ""
            if text:
                examples.append((text, page, True))
    return examples


def page_sentences(passage: Passage) -> List[str]:
    """The passage's sentences of three words or more, as the pages have them (Passage.sentence_texts
    puts the title in front of each for embedding)."""
    return [sentence for sentence in SENTENCE_END.split(passage.text) if len(sentence.split()) >= 3]


def load_facts(directory: Path = settings.KNOWLEDGE_DIR) -> List[Tuple[str, str, str]]:
    """(question, page id, sentence): the customer questions a page's front matter lists under
    `facts:` for one of its sentences (`sentence:` is a verbatim piece of it, unique on the page)."""
    facts = []
    for path in page_files(directory):
        meta, _ = _front_matter(path)
        for i, fact in enumerate(meta.get("facts") or []):
            piece = " ".join(str((fact or {}).get("sentence") or "").split())
            questions = (fact or {}).get("questions") or []
            if not piece or not isinstance(questions, list):
                raise KnowledgeError(f"{path}: facts[{i}] needs a sentence and a list of questions")
            facts += [(" ".join(str(q).split()), meta["id"], piece) for q in questions if str(q).strip()]
    return facts


def fact_rows(passages: Sequence[Passage], facts: Sequence[Tuple[str, str, str]]) -> List[int]:
    """The sentence row (the order of Passage.sentence_texts over all passages) each fact
    question answers; KnowledgeError when its `sentence` is in no sentence of its page, or in several."""
    rows: Dict[Tuple[str, str], List[int]] = {}
    sentences = [(passage.page_id, text) for passage in passages for text in page_sentences(passage)]
    found = []
    for question, page, piece in facts:
        if (page, piece) not in rows:
            rows[page, piece] = [row for row, (p, text) in enumerate(sentences) if p == page and piece in text]
        match = rows[page, piece]
        if len(match) != 1:
            raise KnowledgeError(f"knowledge/{page}.md: facts sentence {piece!r} is in {len(match)} sentences of the "
                                 "page, not exactly one: quote more of the sentence it answers")
        found.append(match[0])
    return found


def digest(directory: Path = settings.KNOWLEDGE_DIR, nlu_file: Path = settings.KNOWLEDGE_EXAMPLES) -> str:
    """Changes whenever a page or the examples change, or the way they are split."""
    h = hashlib.sha256(f"format {FORMAT_VERSION}\n".encode())
    for path in [*page_files(directory), nlu_file]:
        content = path.read_bytes() if path.exists() else b"(absent)"
        h.update(path.name.encode() + b"\0" + content + b"\0")
    return h.hexdigest()


class KnowledgeIndex:
    def __init__(self, passages: Sequence[Passage], vectors: np.ndarray, model: str, source_digest: str,
                 example_pages: Sequence[str] = (), example_vectors: Optional[np.ndarray] = None,
                 page_intents: Optional[Mapping[str, Sequence[str]]] = None,
                 sentence_rows: Sequence[int] = (), sentence_vectors: Optional[np.ndarray] = None,
                 example_nlu: Optional[Sequence[bool]] = None, example_sentences: Optional[Sequence[int]] = None):
        if len(passages) != len(vectors):
            raise KnowledgeError("passages and vectors differ in number")
        self.passages = list(passages)
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.model = model
        self.digest = source_digest
        self.titles = {p.page_id: p.title for p in self.passages}
        self.example_pages = list(example_pages)
        dims = self.vectors.shape[1]
        self.example_vectors = (np.zeros((0, dims), np.float32) if example_vectors is None
                                else np.asarray(example_vectors, dtype=np.float32))
        if len(self.example_pages) != len(self.example_vectors):
            raise KnowledgeError("example pages and vectors differ in number")
        # True for an NLU example, False for a question the page lists (the default)
        self.example_nlu = np.zeros(len(self.example_pages), bool) if example_nlu is None else np.asarray(
            example_nlu, dtype=bool)
        if len(self.example_nlu) != len(self.example_pages):
            raise KnowledgeError("example pages and kinds differ in number")
        # the sentence a page's `facts:` question is about (its row), -1 for the other examples
        self.example_sentences = (np.full(len(self.example_pages), -1, np.int64) if example_sentences is None
                                  else np.asarray(example_sentences, dtype=np.int64))
        if len(self.example_sentences) != len(self.example_pages):
            raise KnowledgeError("example pages and sentences differ in number")
        self.sentence_rows = np.asarray(sentence_rows, dtype=np.int64)  # the passage of each sentence
        self.sentence_vectors = (np.zeros((0, dims), np.float32) if sentence_vectors is None
                                 else np.asarray(sentence_vectors, dtype=np.float32))
        if len(self.sentence_rows) != len(self.sentence_vectors):
            raise KnowledgeError("sentence rows and vectors differ in number")
        if len(self.sentence_rows) and not 0 <= int(self.sentence_rows.min()) <= int(self.sentence_rows.max()) < len(
                self.passages):
            raise KnowledgeError("a sentence row names no passage")
        if len(self.example_sentences) and int(self.example_sentences.max()) >= len(self.sentence_rows):
            raise KnowledgeError("an example names no sentence")
        fact = self.example_sentences >= 0
        self._fact_rows, self._fact_vectors = self.example_sentences[fact], self.example_vectors[fact]
        pages = sorted(self.titles)
        self._page_index = {page: i for i, page in enumerate(pages)}
        self._passage_page = np.array([self._page_index[p.page_id] for p in self.passages])
        self._example_page = np.array([self._page_index[p] for p in self.example_pages], dtype=np.int64)
        self.lexical = Lexical([p.embedding_text() for p in self.passages])
        self.set_page_intents(page_intents or {})

    def set_page_intents(self, page_intents: Mapping[str, Sequence[str]]) -> None:
        """The intents each page lists (front matter), for the intent prior. They are not
        stored in the index file: build and load_current read them from the pages."""
        self.page_intents = {page: list(intents) for page, intents in page_intents.items() if page in self.titles}
        self._intent_page = {intent: self._page_index[page]
                             for page, intents in self.page_intents.items() for intent in intents}

    def intent_scores(self, ranking: Optional[IntentRanking]) -> np.ndarray:
        """Each passage's intent score: the summed confidences of the ranking's intents
        that its page lists (all 0 without a ranking, or for intents no page lists)."""
        pages = np.zeros(len(self._page_index), np.float32)
        for entry in ranking or ():
            page = self._intent_page.get(str(entry.get("name")))
            confidence = entry.get("confidence")
            if page is not None and isinstance(confidence, (int, float)) and confidence > 0:
                pages[page] += float(confidence)
        return np.minimum(pages, 1.0)[self._passage_page]

    def search(self, query: np.ndarray, k: int, text: Optional[str] = None,
               lexical_weight: Optional[float] = None, intent_ranking: Optional[IntentRanking] = None,
               intent_weight: Optional[float] = None) -> List[Hit]:
        """The k best passages for the query vector (and its text, for the lexical
        score; and the NLU's intent ranking of it, for the intent prior), best first
        (see the module's docstring). The weights default to KNOWLEDGE_LEXICAL_WEIGHT
        and KNOWLEDGE_INTENT_WEIGHT, read at each call like the other settings."""
        if lexical_weight is None:
            lexical_weight = settings.KNOWLEDGE_LEXICAL_WEIGHT
        if intent_weight is None:
            intent_weight = settings.KNOWLEDGE_INTENT_WEIGHT
        query = unit(query)
        similarity = self.vectors @ query
        if len(self.sentence_vectors):
            np.maximum.at(similarity, self.sentence_rows, self.sentence_vectors @ query)
        page_best = np.full(len(self._page_index), np.nan, dtype=np.float32)
        if len(self.example_vectors):
            np.fmax.at(page_best, self._example_page,
                       self.example_vectors @ query - NLU_EXAMPLE_PENALTY * self.example_nlu)
        page_similarity = page_best[self._passage_page]
        page_similarity = np.where(np.isnan(page_similarity), similarity, page_similarity)  # no examples
        # A question worded like the page's text (not like a customer's) is as relevant:
        # the better of that weighting and the plain mean.
        scores = np.maximum(PASSAGE_WEIGHT * similarity + (1 - PASSAGE_WEIGHT) * page_similarity,
                            (similarity + page_similarity) / 2)
        lexical = self.lexical.scores(text) if text else np.zeros_like(scores)
        intent = self.intent_scores(intent_ranking)
        order = np.argsort(-(scores + lexical_weight * lexical + intent_weight * intent), kind="stable")[:k]
        return [Hit(float(scores[i]), float(similarity[i]), float(page_similarity[i]), self.passages[i], int(i),
                    float(lexical[i]), float(intent[i])) for i in order]

    def fact_similarity(self, query: np.ndarray) -> np.ndarray:
        """Per sentence, the best cosine similarity of the query to the `facts:` questions
        about it; NaN for a sentence without any."""
        best = np.full(len(self.sentence_rows), np.nan, dtype=np.float32)
        if len(self._fact_rows):
            np.fmax.at(best, self._fact_rows, self._fact_vectors @ unit(query))
        return best

    def vectors_of(self, hits: Sequence[Hit]) -> np.ndarray:
        """The passage vectors of some hits, in order (to compare replies with what was retrieved)."""
        return self.vectors[[hit.row for hit in hits]]

    def save(self, path: Path) -> None:
        meta = {"format": FORMAT_VERSION, "model": self.model, "digest": self.digest,
                "passages": [asdict(p) for p in self.passages], "example_pages": self.example_pages,
                "sentence_rows": self.sentence_rows.tolist()}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, vectors=self.vectors, example_vectors=self.example_vectors,
                         example_nlu=self.example_nlu, example_sentences=self.example_sentences,
                         sentence_vectors=self.sentence_vectors,
                         meta=np.array(json.dumps(meta)))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)  # readers never see half a file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> "KnowledgeIndex":
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != FORMAT_VERSION:
                    raise KnowledgeError(f"{path} has format {meta.get('format')}, expected {FORMAT_VERSION}")
                return cls([Passage(**p) for p in meta["passages"]], data["vectors"], meta["model"],
                           meta["digest"], meta["example_pages"], data["example_vectors"],
                           sentence_rows=meta["sentence_rows"], sentence_vectors=data["sentence_vectors"],
                           example_nlu=data["example_nlu"], example_sentences=data["example_sentences"])
        except (OSError, KeyError, ValueError) as error:
            raise KnowledgeError(f"cannot read the knowledge index {path}: {error}") from error


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def load_current(path: Path = settings.KNOWLEDGE_INDEX, directory: Path = settings.KNOWLEDGE_DIR,
                 model: str = settings.EMBEDDINGS_MODEL, nlu_file: Path = settings.KNOWLEDGE_EXAMPLES
                 ) -> Tuple[Optional[KnowledgeIndex], str]:
    """(index, "") when the file exists and matches the files and model; else (None, why not)."""
    if not path.exists():
        return None, f"{path} does not exist"
    try:
        index = KnowledgeIndex.load(path)
    except KnowledgeError as error:
        return None, str(error)
    if index.model != model:
        return None, f"{path} was built with {index.model}, not {model}"
    if index.digest != digest(directory, nlu_file):
        return None, f"{path} is stale: {directory} or {nlu_file.name} changed since it was built"
    index.set_page_intents(load_page_intents(directory))  # the pages the digest just vouched for
    return index, ""


if __name__ == "__main__":  # python -m assistant.knowledge build|check
    from assistant.knowledge_build import main

    sys.exit(main())
