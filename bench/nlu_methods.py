"""In-scope intent accuracy on Banking77: methods tried against the pipeline's classifier (issue 22).

Outside Rasa, on the same features as config.yml's pipeline: Rasa's WhitespaceTokenizer,
word 1-2-gram and char_wb 2-4-gram (min_df 2) counts, sublinear tf-idf, and the project's
all-MiniLM-L6-v2 ONNX encoder (assistant.encoder.SentenceEncoder, int8, one sentence at a
time, as the featurizer runs it). Only the Banking77 intents: the training part is
data/nlu/banking77.yml, the evaluation part the Banking77 examples of
build/validation/nlu.yml (both written by `make data`); the project's own intents and
out_of_scope are left out, so the classifier chooses among the 77 intents.

Every method's hyperparameters are chosen by 5-fold stratified cross-validation on the
training part only (vectorizers, tf-idf and models refitted on each fold's training
part); each method is then fitted once on the whole training part and evaluated once on
the validation split.

Methods:
- baseline: one logistic regression (C=10, lbfgs) over tf-idf n-grams + embeddings;
- kNN: cosine k-nearest-neighbour voting over the embeddings (k, vote weights);
- sparse+dense ensemble: separate LRs on the tf-idf n-grams and on the embeddings,
  probabilities averaged (weight, the dense LR's C);
- LR + kNN: the baseline's probabilities mixed with kNN votes (mixing weight, k);
- confident learning: 5-fold out-of-fold baseline probabilities; an example whose given
  label's probability is below `scale` x that class's average self-confidence while
  another class is at or above its own threshold is dropped or relabelled to that class,
  then the baseline is refitted (scale, action). A fit takes about a minute here, so its
  cross-validation refits only two of the five folds, and flags their training parts
  from the same out-of-fold probabilities (not nested: the held-out fold was part of
  the models that scored them).

The logistic regression is scikit-learn's lbfgs objective solved with scipy directly
(class LR; same validation predictions as LogisticRegression on these features), only
faster on the mixed sparse/dense features.

    .venvs/rasa/bin/python -m bench.nlu_methods [--write-noise-review]

Embeddings are cached under build/bench/. About 10-15 minutes on one core.
"""
from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse
import csv
import hashlib
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parent.parent
TRAIN_FILE = ROOT / "data" / "nlu" / "banking77.yml"
VALIDATION_FILE = ROOT / "build" / "validation" / "nlu.yml"
CACHE_DIR = ROOT / "build" / "bench"
NOISE_REVIEW = ROOT / "bench" / "nlu" / "noise-review.csv"
OUT_OF_SCOPE = "out_of_scope"

FOLDS = 5
SEED = 2020
C = 10.0  # config.yml
KS = (1, 3, 5, 7, 10, 15, 20, 30, 50)
KNN_WEIGHTS = ("uniform", "similarity", "softmax")
SOFTMAX_T = 0.05
ENSEMBLE_W = tuple(np.round(np.arange(0.0, 1.01, 0.1), 2))
DENSE_CS = (10.0, 100.0)
MIX_A = tuple(np.round(np.arange(0.1, 0.91, 0.1), 2))
CL_SCALES = (1.0, 0.5)
CL_ACTIONS = ("drop", "relabel")
CL_FOLDS = (0, 1)  # confident learning's refits are scored on these two of the five folds


# -- data and features -------------------------------------------------------------------------


def load(path: Path) -> Tuple[List[str], List[str]]:
    from rasa.shared.nlu.training_data.loading import load_data

    examples = [e for e in load_data(str(path)).intent_examples if e.get("intent") != OUT_OF_SCOPE]
    return [e.get("text") for e in examples], [e.get("intent") for e in examples]


def tokenized(texts: Sequence[str]) -> List[str]:
    """What Rasa's CountVectorsFeaturizer vectorizes: WhitespaceTokenizer tokens, lower-cased, joined."""
    from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
    from rasa.shared.nlu.training_data.message import Message

    tokenizer = WhitespaceTokenizer(WhitespaceTokenizer.get_default_config())
    return [
        " ".join(t.text.lower() for t in tokenizer.tokenize(Message(data={"text": text}), "text"))
        for text in texts
    ]


def embeddings(texts: Sequence[str]) -> np.ndarray:
    """The project's encoder as the featurizer runs it (int8, one thread), cached under build/bench/."""
    from assistant.config import embeddings_model_dir
    from assistant.encoder import DEFAULT_MODEL_DIR, SentenceEncoder

    model_dir = Path(embeddings_model_dir() or DEFAULT_MODEL_DIR)
    key = hashlib.sha256()
    key.update(str((model_dir / "model.int8.onnx").stat().st_mtime_ns).encode())
    for text in texts:
        key.update(text.encode() + b"\0")
    cache = CACHE_DIR / f"nlu-methods-embeddings-{key.hexdigest()[:16]}.npy"
    if cache.is_file():
        return np.load(cache)
    started = time.monotonic()
    vectors = SentenceEncoder(model_dir, threads=1, quantized=True).encode(list(texts), 64)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    print(f"encoded {len(texts)} texts in {time.monotonic() - started:.0f} s -> {cache.relative_to(ROOT)}", file=sys.stderr)
    return vectors


class Features:
    """Vectorizers and tf-idf fitted on one training part (as the pipeline trains them)."""

    def __init__(self, train_tokens: Sequence[str]) -> None:
        self.word = CountVectorizer(analyzer="word", token_pattern=r"(?u)\b\w+\b", ngram_range=(1, 2))
        self.char = CountVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2)
        counts = hstack([self.word.fit_transform(train_tokens), self.char.fit_transform(train_tokens)]).tocsr()
        self.tfidf = TfidfTransformer(sublinear_tf=True).fit(counts)

    def sparse(self, tokens: Sequence[str]) -> csr_matrix:
        counts = hstack([self.word.transform(tokens), self.char.transform(tokens)]).tocsr()
        return self.tfidf.transform(counts).tocsr()


class LR:
    """Multinomial logistic regression with an L2 penalty: scikit-learn's lbfgs model
    (LogisticRegression(C, solver="lbfgs", tol=1e-4, max_iter=1000): same objective,
    unpenalised intercept, zero start, scipy's L-BFGS-B with the same options), but the
    embedding block is multiplied as a dense matrix (BLAS) instead of inside one sparse
    matrix, which makes a fit of the pipeline's features about 2-3 times faster here.
    """

    def __init__(self, c: float = C, max_iter: int = 1000, tol: float = 1e-4) -> None:
        self.c, self.max_iter, self.tol = c, max_iter, tol

    @staticmethod
    def _blocks(S, E) -> Tuple[List, int]:
        blocks = [b for b in (S, E) if b is not None]
        return blocks, sum(b.shape[1] for b in blocks)

    def _logits(self, blocks, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        z, offset = np.tile(b, (blocks[0].shape[0], 1)), 0
        for block in blocks:
            z += np.asarray(block @ W[offset : offset + block.shape[1]])
            offset += block.shape[1]
        return z

    def fit(self, S, E, y: np.ndarray, n_classes: int) -> "LR":
        from scipy.optimize import minimize
        from scipy.special import logsumexp

        blocks, d = self._blocks(S, E)
        k = n_classes
        Y = np.zeros((len(y), k))
        Y[np.arange(len(y)), y] = 1.0
        alpha = 1.0 / self.c

        def loss_grad(w: np.ndarray):
            W, b = w[: d * k].reshape(d, k), w[d * k :]
            z = self._logits(blocks, W, b)
            lse = logsumexp(z, axis=1, keepdims=True)
            loss = float(-(Y * (z - lse)).sum() + 0.5 * alpha * (W * W).sum())
            diff = np.exp(z - lse) - Y
            grad_w, offset = np.empty_like(W), 0
            for block in blocks:
                grad_w[offset : offset + block.shape[1]] = np.asarray(block.T @ diff)
                offset += block.shape[1]
            grad_w += alpha * W
            return loss, np.concatenate([grad_w.ravel(), diff.sum(axis=0)])

        result = minimize(
            loss_grad, np.zeros(d * k + k), method="L-BFGS-B", jac=True,
            options={"maxiter": self.max_iter, "maxls": 50, "gtol": self.tol, "ftol": 64 * np.finfo(float).eps},
        )
        self.W, self.b, self.n_iter = result.x[: d * k].reshape(d, k), result.x[d * k :], result.nit
        return self

    def predict_proba(self, S, E) -> np.ndarray:
        from scipy.special import softmax

        blocks, _ = self._blocks(S, E)
        return softmax(self._logits(blocks, self.W, self.b), axis=1)


# -- kNN and confident learning ------------------------------------------------------------------


def neighbours(query: np.ndarray, base: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    sims = query @ base.T
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(sims, idx, axis=1)
    order = np.argsort(-top, axis=1)
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(top, order, axis=1)


def knn_votes(idx: np.ndarray, sims: np.ndarray, base_y: np.ndarray, n_classes: int, k: int, weights: str) -> np.ndarray:
    idx, sims = idx[:, :k], sims[:, :k]
    if weights == "uniform":
        w = np.ones_like(sims)
    elif weights == "similarity":
        w = np.clip(sims, 1e-6, None)
    else:
        w = np.exp((sims - sims[:, :1]) / SOFTMAX_T)
    votes = np.zeros((idx.shape[0], n_classes))
    np.add.at(votes, (np.repeat(np.arange(idx.shape[0]), k), base_y[idx].ravel()), w.ravel())
    return votes / votes.sum(axis=1, keepdims=True)


def confident_issues(p: np.ndarray, y: np.ndarray, scale: float) -> Tuple[np.ndarray, np.ndarray]:
    """Indices whose given label looks wrong, and the suggested label of each.

    Per-class threshold t_j = average out-of-fold probability of class j over examples
    labelled j. Example i (label y) is an issue when p[i, y] < scale * t_y and some other
    class j has p[i, j] >= t_j; the suggestion is the most probable such j.
    """
    n_classes = p.shape[1]
    t = np.array([p[y == j, j].mean() if np.any(y == j) else 1.0 for j in range(n_classes)])
    above = p >= t[np.newaxis, :]
    above[np.arange(len(y)), y] = False
    low = p[np.arange(len(y)), y] < scale * t[y]
    issues = np.where(low & above.any(axis=1))[0]
    suggested = np.argmax(np.where(above[issues], p[issues], -1.0), axis=1)
    return issues, suggested


def cleaned(idx: np.ndarray, y: np.ndarray, issues: np.ndarray, suggested: np.ndarray, action: str):
    """Training indices and labels after cleaning (`issues` index into `idx`)."""
    y = y.copy()
    if action == "relabel":
        y[issues] = suggested
        return idx, y
    keep = np.ones(len(idx), dtype=bool)
    keep[issues] = False
    return idx[keep], y[keep]


# -- the run ----------------------------------------------------------------------------------


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a sixth of the data, 30 iterations: checks the code runs")
    parser.add_argument("--write-noise-review", action="store_true",
                        help=f"write the cleaned examples to {NOISE_REVIEW.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    run_started = time.monotonic()

    train_texts, train_labels = load(TRAIN_FILE)
    val_texts, val_labels = load(VALIDATION_FILE)
    if args.smoke:
        train_texts, train_labels = train_texts[::6], train_labels[::6]
        LR.__init__.__defaults__ = (C, 30, 1e-4)
    classes = np.array(sorted(set(train_labels)))
    n_classes = len(classes)
    y = np.searchsorted(classes, train_labels)
    y_val = np.searchsorted(classes, val_labels)
    assert set(val_labels) <= set(classes)
    print(f"training {len(y)} examples, validation {len(y_val)}, {n_classes} intents", file=sys.stderr)

    tokens, val_tokens = tokenized(train_texts), tokenized(val_texts)
    E = embeddings(list(train_texts) + list(val_texts)).astype(np.float64)
    E, E_val = E[: len(y)], E[len(y):]

    folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=SEED).split(np.zeros(len(y)), y))
    fold_of = np.empty(len(y), dtype=int)
    for f, (_, test) in enumerate(folds):
        fold_of[test] = f

    # Out-of-fold probabilities of the three LRs, and the kNN neighbour lists.
    oof = {"full": np.zeros((len(y), n_classes)), "sparse": np.zeros((len(y), n_classes))}
    oof.update({("dense", c): np.zeros((len(y), n_classes)) for c in DENSE_CS})
    knn_idx = np.zeros((len(y), max(KS)), dtype=int)
    knn_sim = np.zeros((len(y), max(KS)))
    fold_sparse: Dict[int, Tuple[csr_matrix, csr_matrix]] = {}
    seconds = {"full": 0.0, "sparse": 0.0, "dense": 0.0}
    for f, (tr, te) in enumerate(folds):
        feats = Features([tokens[i] for i in tr])
        S_tr, S_te = feats.sparse([tokens[i] for i in tr]), feats.sparse([tokens[i] for i in te])
        if f in CL_FOLDS:
            fold_sparse[f] = (S_tr, S_te)
        started = time.monotonic()
        oof["full"][te] = LR().fit(S_tr, E[tr], y[tr], n_classes).predict_proba(S_te, E[te])
        seconds["full"] += time.monotonic() - started
        started = time.monotonic()
        oof["sparse"][te] = LR().fit(S_tr, None, y[tr], n_classes).predict_proba(S_te, None)
        seconds["sparse"] += time.monotonic() - started
        started = time.monotonic()
        for c in DENSE_CS:
            oof[("dense", c)][te] = LR(c).fit(None, E[tr], y[tr], n_classes).predict_proba(None, E[te])
        seconds["dense"] += time.monotonic() - started
        idx, sims = neighbours(E[te], E[tr], max(KS))
        knn_idx[te], knn_sim[te] = tr[idx], sims
        print(f"fold {f + 1}/{FOLDS}: baseline CV acc {np.mean(oof['full'][te].argmax(1) == y[te]):.4f}, "
              f"{time.monotonic() - run_started:.0f} s", file=sys.stderr)

    def acc(p: np.ndarray) -> float:
        return float(np.mean(p.argmax(axis=1) == y))

    results: List[Dict] = []
    cv = {}

    # kNN: k and vote weights
    knn_grid = {(k, w): acc(knn_votes(knn_idx, knn_sim, y, n_classes, k, w)) for k in KS for w in KNN_WEIGHTS}
    knn_best = max(knn_grid, key=lambda key: (knn_grid[key], -key[0]))
    cv["knn"] = knn_grid[knn_best]

    # sparse + dense ensemble: weight of the sparse LR, C of the dense LR
    ens_grid = {(w, c): acc(w * oof["sparse"] + (1 - w) * oof[("dense", c)]) for w in ENSEMBLE_W for c in DENSE_CS}
    ens_best = max(ens_grid, key=lambda key: (ens_grid[key], -abs(key[0] - 0.5)))
    cv["ensemble"] = ens_grid[ens_best]

    # LR + kNN: mixing weight of the votes, k, vote weights
    mix_grid = {
        (a, k, w): acc((1 - a) * oof["full"] + a * knn_votes(knn_idx, knn_sim, y, n_classes, k, w))
        for a in MIX_A for k in KS for w in KNN_WEIGHTS
    }
    mix_best = max(mix_grid, key=lambda key: (mix_grid[key], -key[0]))
    cv["mix"] = mix_grid[mix_best]
    print(f"kNN {knn_best} {cv['knn']:.4f}; ensemble {ens_best} {cv['ensemble']:.4f}; "
          f"LR+kNN {mix_best} {cv['mix']:.4f}; {time.monotonic() - run_started:.0f} s", file=sys.stderr)

    # Confident learning: the issues are flagged from the 5-fold out-of-fold baseline
    # probabilities (per-class thresholds over the fold's training part); the baseline is
    # refitted on the cleaned training part of CL_FOLDS only (a fit costs ~1 min here) and
    # scored on their held-out folds with the labels as given.
    cl_hits = {(s, a): 0 for s in CL_SCALES for a in CL_ACTIONS}
    cl_flagged = {(s, a): [] for s in CL_SCALES for a in CL_ACTIONS}
    for f in CL_FOLDS:
        tr, te = folds[f]
        S_tr, S_te = fold_sparse[f]
        for s in CL_SCALES:
            issues, suggested = confident_issues(oof["full"][tr], y[tr], s)
            for a in CL_ACTIONS:
                keep, labels = cleaned(np.arange(len(tr)), y[tr], issues, suggested, a)
                p = LR().fit(S_tr[keep], E[tr][keep], labels, n_classes).predict_proba(S_te, E[te])
                cl_hits[(s, a)] += int(np.sum(p.argmax(1) == y[te]))
                cl_flagged[(s, a)].append(len(issues))
        print(f"confident learning fold {f + 1}: {time.monotonic() - run_started:.0f} s", file=sys.stderr)
    cl_rows = np.concatenate([folds[f][1] for f in CL_FOLDS])
    cl_grid = {key: n / len(cl_rows) for key, n in cl_hits.items()}
    cl_best = max(cl_grid, key=lambda key: cl_grid[key])  # ties: the first of the grid order
    cv["cl"] = cl_grid[cl_best]
    cv["cl_baseline"] = float(np.mean(oof["full"][cl_rows].argmax(1) == y[cl_rows]))

    # -- once on the validation split ---------------------------------------------------------

    def report(method: str, params: str, cv_acc: float, predicted: np.ndarray, secs: float) -> None:
        results.append({
            "method": method, "params": params, "cv": cv_acc,
            "val": float(np.mean(predicted == y_val)),
            "f1": float(f1_score(y_val, predicted, average="macro")),
            "secs": secs,
        })

    started = time.monotonic()
    feats = Features(tokens)
    S, S_val = feats.sparse(tokens), feats.sparse(val_tokens)
    featurize_s = time.monotonic() - started

    started = time.monotonic()
    p_base = LR().fit(S, E, y, n_classes).predict_proba(S_val, E_val)
    base_s = time.monotonic() - started
    report("baseline: LR over tf-idf n-grams + MiniLM (pipeline)", "C=10", acc(oof["full"]), p_base.argmax(1), featurize_s + base_s)

    started = time.monotonic()
    k, w = knn_best
    v_idx, v_sim = neighbours(E_val, E, max(KS))
    votes = knn_votes(v_idx, v_sim, y, n_classes, k, w)
    report("kNN voting over MiniLM embeddings", f"k={k}, weights={w}", cv["knn"], votes.argmax(1), time.monotonic() - started)

    started = time.monotonic()
    wt, dc = ens_best
    p_sparse = LR().fit(S, None, y, n_classes).predict_proba(S_val, None)
    p_dense = LR(dc).fit(None, E, y, n_classes).predict_proba(None, E_val)
    report("ensemble: sparse LR + dense LR (probability average)", f"w_sparse={wt:.1f}, C_dense={dc:g}",
           cv["ensemble"], (wt * p_sparse + (1 - wt) * p_dense).argmax(1), featurize_s + time.monotonic() - started)

    started = time.monotonic()
    a, k, w = mix_best
    votes = knn_votes(v_idx, v_sim, y, n_classes, k, w)
    report("baseline LR probabilities + kNN votes", f"a={a:.1f}, k={k}, weights={w}", cv["mix"],
           ((1 - a) * p_base + a * votes).argmax(1), featurize_s + base_s + time.monotonic() - started)

    # Confident learning on the whole training part: the flags come from the 5-fold
    # out-of-fold probabilities (the fold models above), then one cold refit.
    started = time.monotonic()
    s, action = cl_best
    issues, suggested = confident_issues(oof["full"], y, s)
    keep, labels = cleaned(np.arange(len(y)), y, issues, suggested, action)
    p_cl = LR().fit(S[keep], E[keep], labels, n_classes).predict_proba(S_val, E_val)
    cl_s = featurize_s + seconds["full"] + time.monotonic() - started
    report("confident learning + baseline LR", f"scale={s:g}, action={action} ({len(issues)} of {len(y)} examples)",
           cv["cl"], p_cl.argmax(1), cl_s)

    total = time.monotonic() - run_started
    print("| method | chosen hyperparameters | CV acc. (5-fold, train) | validation acc. | macro F1 | fit+predict |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['method']} | {r['params']} | {r['cv']:.2%} | {r['val']:.2%} | {r['f1']:.2%} | {r['secs']:.0f} s |")
    print()
    print(f"{len(y)} training and {len(y_val)} validation examples, {n_classes} intents; total run {total:.0f} s.")
    print("CV grids (accuracy):")
    print("  kNN: " + ", ".join(f"k={k}/{w}={v:.4f}" for (k, w), v in sorted(knn_grid.items()) if w == knn_best[1]))
    print("  ensemble: " + ", ".join(f"w={w:.1f}/C={c:g}={v:.4f}" for (w, c), v in sorted(ens_grid.items()) if c == ens_best[1]))
    print("  LR+kNN (k, weights chosen): " + ", ".join(
        f"a={a:.1f}={v:.4f}" for (a, k, w), v in sorted(mix_grid.items()) if (k, w) == mix_best[1:]))
    print(f"  confident learning (CV on folds {[f + 1 for f in CL_FOLDS]} only, {len(cl_rows)} examples; "
          f"baseline there {cv['cl_baseline']:.4f}): " + ", ".join(
              f"scale={s:g}/{a}={v:.4f} (flagged {'/'.join(map(str, cl_flagged[(s, a)]))})"
              for (s, a), v in sorted(cl_grid.items())))
    print("  fold-fit seconds (5 folds): " + ", ".join(f"{k}={v:.0f}" for k, v in seconds.items()))

    # The cleaned examples, for review: always under build/bench/, in bench/nlu/ on request.
    targets = [CACHE_DIR / NOISE_REVIEW.name] + ([NOISE_REVIEW] if args.write_noise_review and not args.smoke else [])
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "given_label", "suggested_label", "action"])
            for i, j in sorted(zip(issues, suggested), key=lambda pair: (classes[y[pair[0]]], train_texts[pair[0]])):
                writer.writerow([train_texts[i], classes[y[i]], classes[j], action])
        print(f"wrote {len(issues)} rows to {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
