"""A word search over the knowledge pages (knowledge/*.md), for agents who answer from them.

Each paragraph of a page's body is a passage; a passage scores the inverse document
frequency of the query's words it contains (a word in its page's title counts half).
Read once at start; no embeddings, no generator: the console works when they are down.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOP = set("""a an and are as at be but by can do does for from has have how i if in is it its me my no not
of on or our so that the their them then there these this to was we what when where which who why will with
you your""".split())


def words(text: str) -> List[str]:
    return [w for w in WORD.findall(text.lower()) if w not in STOP]


@dataclass(frozen=True)
class Passage:
    page: str
    title: str
    heading: str
    text: str


def _body(text: str) -> tuple:
    meta: Dict[str, str] = {}
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            for line in text[3:end].splitlines():
                if ":" in line and not line.startswith((" ", "-")):
                    key, value = line.split(":", 1)
                    meta[key.strip()] = value.strip()
            text = text[end + 4:]
    return meta, text


def load(folder: Path) -> List[Passage]:
    passages: List[Passage] = []
    for path in sorted(folder.glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        meta, body = _body(path.read_text(encoding="utf-8"))
        page, title, heading = meta.get("id") or path.stem, meta.get("title") or path.stem, ""
        for block in re.split(r"\n\s*\n", body):
            block = block.strip()
            if not block:
                continue
            if block.startswith("#"):
                lines = block.splitlines()
                heading = lines[0].lstrip("#").strip()
                block = "\n".join(lines[1:]).strip()
                if not block:
                    continue
            passages.append(Passage(page, title, heading, block))
    return passages


class Search:
    def __init__(self, folder: Path) -> None:
        self.passages = load(folder) if folder.is_dir() else []
        self._words = [Counter(words(p.text)) for p in self.passages]
        self._title_words = [set(words(p.title + " " + p.heading)) for p in self.passages]
        df: Counter = Counter()
        for counted in self._words:
            df.update(counted.keys())
        n = max(1, len(self.passages))
        self.idf = {w: math.log(1 + n / c) for w, c in df.items()}

    def search(self, query: str, limit: int = 5) -> List[Dict[str, str]]:
        asked = set(words(query))
        if not asked:
            return []
        scored = []
        for i, passage in enumerate(self.passages):
            score = sum(self.idf.get(w, 0.0) for w in asked if w in self._words[i])
            score += 0.5 * sum(self.idf.get(w, 1.0) for w in asked if w in self._title_words[i])
            if score > 0:
                scored.append((score, i))
        scored.sort(key=lambda pair: (-pair[0], pair[1]))
        return [{"page": self.passages[i].page, "title": self.passages[i].title,
                 "heading": self.passages[i].heading, "text": self.passages[i].text,
                 "score": round(score, 2)} for score, i in scored[:limit]]
