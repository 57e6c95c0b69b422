"""A saved run is portable: an adapter trained on one device loads and gives the same logits on another.

    python bench/portability.py train  DIR   # build a tiny Qwen2 base in DIR/base, LoRA-SFT it, save logits
    python bench/portability.py check  DIR   # load DIR/run on this device, compare with the saved logits

Run `train` on a GPU and `check` on a CPU, and the reverse. The base is built with a fixed seed
and saved beside the run, so both sides use the same weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IDS = [[3, 17, 29, 41, 53, 67, 2, 4]]


def logits(run: Path) -> torch.Tensor:
    from rlft import models

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = models.run_model(run).to(device).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(IDS, device=device)).logits.float().cpu()


def train(folder: Path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlft import cli
    from rlft.stages.base import train_tokenizer
    from rlft.tasks.harbor import generator as harbor

    base = folder / "base"
    tok = train_tokenizer([r["messages"] for r in harbor.sft_rows(0, 500)], 1000)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    Qwen2ForCausalLM(config).save_pretrained(base)
    tok.save_pretrained(base)
    sets = [f"model={base}", "lora.enabled=true", "lora.r=8", "train.max_steps=5",
            "train.learning_rate=0.01", "data.n_train=80", "data.validation=null", "eval.enabled=false"]
    args = ["sft", "--recipe", "recipes/customer_support/sft.yaml", "--output-dir", str(folder / "run")]
    assert cli.main(args + [w for s in sets for w in ("--set", s)]) == 0
    torch.save(logits(folder / "run"), folder / "logits.pt")
    (folder / "device.txt").write_text(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")


def check(folder: Path) -> None:
    theirs = torch.load(folder / "logits.pt", weights_only=True)
    ours = logits(folder / "run")
    diff = (theirs - ours).abs().max().item()
    here = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(json.dumps({"trained_on": (folder / "device.txt").read_text(), "loaded_on": here, "max_abs_logit_diff": diff}))
    assert diff < 1e-2, diff


if __name__ == "__main__":
    {"train": train, "check": check}[sys.argv[1]](Path(sys.argv[2]))
