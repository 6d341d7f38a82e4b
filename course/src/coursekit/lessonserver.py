"""The lesson server: a process that imports the heavy modules once, then forks one child per lesson file.

Run as `python -m coursekit.lessonserver` by `coursekit.runner.LessonServer`, which speaks to it in JSON lines:
a request `{"path", "workdir", "result"}` on stdin, answered by `{"pid": ...}` when the child starts and
`{"exit": ...}` when it ends; the child writes its list of `BlockRun`s, pickled, to `result`.

The server itself runs no lesson code and never touches CUDA or starts threads of its own, so every child starts
from the same state: a fresh interpreter that has imported PRELOAD and done nothing else. Whatever a lesson changes
(warning filters, thread counts, deterministic mode, default dtype, grad mode, backend flags, Accelerate's
singletons) ends with its child.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import sys
import traceback
from pathlib import Path

# Imported once, here. Only imports: their side effects (module-level warning filters, loggers, torchvision
# loading torch._dynamo) are the same for every file, as if each lesson began with these imports.
PRELOAD = [
    "numpy",
    "torch",
    "torchvision",
    "matplotlib.pyplot",
    "safetensors.torch",
    "lightning",
    "dlshared.testing",
    "dlshared.training",
    "classifier.train",
    "classifier.evaluate",
    "classifier.probes",
    "classifier.transfer",
    "detector.model",
    "detector.train",
    "diffusion.model",
    "diffusion.train",
    "transformers",  # days 21-30: the library and the model classes lessons build from configs (seconds each)
    "transformers.models.llama.modeling_llama",
    "transformers.models.gpt2.modeling_gpt2",
    "transformers.models.bert.modeling_bert",
    "tokenizers",
    "peft",
    "sentence_transformers",
    "tinygpt.train",
    "tinygpt.export",
    "tuner.base",
    "tuner.lora",
    "tuner.dpo",
    "rag.indexer",
    "rag.retrieve",
    "torch_geometric",  # days 31-40: the graph and multimodal capstones' libraries (seconds each)
    "graph.model",
    "graph.recommender",
    "open_clip",
    "multimodal.model",
    "coursekit.runner",
]

# What a lesson prints must not depend on the CPU it runs on, and a few epochs of training turn a last-bit difference
# (a matrix product summed in another order by AVX-512 kernels than by AVX2 ones) into another loss curve. So lessons
# run on the same numeric code paths on every x86-64 machine: ATen's AVX2 kernels, MKL's COMPATIBLE branch (MKL keeps
# its AVX2 branch for Intel CPUs only: on AMD it falls back to AUTO), oneDNN and FBGEMM capped at AVX2. Read when torch loads,
# hence set before PRELOAD; a variable already set wins. The price: MKL's matrix products run ~3x slower.
NUMERIC_PATHS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's own kernels, and the code torch.compile generates
    "MKL_CBWR": "COMPATIBLE",  # matrix products
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # convolutions
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",  # int8 kernels: with VNNI, u8 x s8 products do not saturate as on AVX2
}


def run_child(request: dict) -> None:
    from coursekit.runner import BlockRun, run_blocks
    from dlshared.testing import install_network_guard

    install_network_guard()  # offline like the test that asked (the offline env vars are inherited)
    try:
        runs = run_blocks(Path(request["path"]), Path(request["workdir"]))
    except BaseException:  # the runner itself failed: report it as a failure at line 0
        runs = [BlockRun(0, "", traceback.format_exc())]
    Path(request["result"]).write_bytes(pickle.dumps(runs))


def serve() -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed outside a block (C code, a child's stray output) goes to stderr, not here
    for name, value in NUMERIC_PATHS.items():
        os.environ.setdefault(name, value)
    for name in PRELOAD:
        importlib.import_module(name)
    replies.write("ready\n")
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: one lesson file, then gone without running anyone's exit handlers
            code = 1
            try:
                replies.close()
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)  # a lesson that reads stdin must not eat the next request
                run_child(request)
                code = 0
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        replies.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n")


if __name__ == "__main__":
    serve()
