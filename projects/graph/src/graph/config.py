"""Typed configuration of every verb, and the presets of `train`.

One `train` verb, two tasks (`--task`): node classification on a citation graph (day 32: message passing) and
recommendation from a user-item graph (day 39). Each task has its own presets; `--task recommend` without
`--preset` starts from the `recommend` preset (cli.py), as `--task node` starts from `quick`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from dlshared.cli import (
    BelowOne,
    Check,
    Fraction,
    NonNegative,
    NonNegativeFloat,
    Port,
    Positive,
    PositiveFloat,
    UserError,
)
from dlshared.hub import HubRepoId

PROJECT = "graph"
"""Name of the run folder family: runs/graph/<name>/."""

NODE_MODELS = ("mlp", "gcn-hand", "gcn-mp", "gcn", "gat", "sage")
RECOMMEND_MODELS = ("popularity", "mf", "lightgcn", "gfcf")
Rating = Annotated[float, Check(lambda v: 0 <= v <= 10, "between 0 and 10", (-1.0, 11.0))]


@dataclass
class TrainConfig:
    # --- task and data ---
    task: Literal["node", "recommend"] = "node"
    """node: classify the nodes of a citation graph (Cora). recommend: rank items for users (MovieLens)."""
    data: Path | None = None
    """node: a folder of Planetoid raw files (ind.<name>.x, ...; Cora, CiteSeer, PubMed). recommend: MovieLens
    ratings.csv or u.data, a user,item[,rating] CSV, or a LightGCN folder (train.txt + test.txt). Unset: the
    bundled Cora / MovieLens ml-latest-small."""
    min_rating: Rating = 4.0
    """recommend: a rating at or above this is a positive interaction (implicit feedback); below is dropped."""
    test_fraction: Fraction = 0.2
    """recommend: share of each user's positives held out for the test (a LightGCN folder brings its own split)."""
    split_seed: NonNegative = 0
    """recommend: seed of the per-user split (kept apart from --seed so the test set never moves)."""

    # --- model ---
    model: Literal["mlp", "gcn-hand", "gcn-mp", "gcn", "gat", "sage", "popularity", "mf", "lightgcn", "gfcf"] = "gcn"
    """node: mlp (features only), gcn-hand (model.py's own layer), gcn-mp (the same as a MessagePassing class),
    gcn (PyG's GCNConv), gat, sage. recommend: popularity, mf (matrix factorisation, BPR), lightgcn, gfcf."""
    hidden: Positive = 16
    """node: width of the hidden layers (per head for GAT). recommend: embedding dimension."""
    layers: Positive = 2
    """node: graph layers (the last one maps to the classes). recommend: LightGCN propagation steps."""
    dropout: BelowOne = 0.5
    """node: dropout on the input of every layer (and on GAT's attention coefficients)."""
    heads: Positive = 8
    """gat: attention heads of the hidden layers (the output layer has one)."""
    gfcf_alpha: NonNegativeFloat = 0.3
    """gfcf: weight of the ideal low-pass filter beside the linear filter."""
    gfcf_rank: Positive = 256
    """gfcf: singular vectors kept by the ideal low-pass filter."""

    # --- optimisation ---
    epochs: Positive = 200
    """node: full-batch epochs per seed. recommend: passes over the training interactions."""
    min_steps: NonNegative = 0
    """recommend: at least this many optimizer steps, whatever the data size (more epochs for a small ratings
    file). node: unused, a full-batch epoch is one step on any graph (and --patience decides when to stop)."""
    patience: NonNegative = 100
    """node: stop a seed when validation accuracy has not improved for this many epochs (0 = never stop early);
    its best-validation weights are kept."""
    lr: PositiveFloat = 0.01
    weight_decay: NonNegativeFloat = 5e-4
    """node: Adam's L2 penalty. recommend: L2 on the embeddings of each batch (LightGCN's reg), mf and lightgcn."""
    batch_size: Positive = 2048
    """recommend: (user, positive, negative) triples per step. node with --fanout: seed nodes per step."""
    fanout: tuple[Positive, ...] = ()
    """node: neighbours sampled per layer (GraphSAGE's mini-batches, e.g. 10 10: one number per layer); empty:
    full-batch training on the whole graph."""
    seeds: Positive = 10
    """node: train this many seeds (--seed, --seed + 1, ...) one after another and report mean ± std; the model
    of the first seed is the one saved. recommend: 1."""
    seed: NonNegative = 0
    k: Positive = 20
    """recommend: the length of the ranked list scored (recall@k, NDCG@k)."""
    eval_every: Positive = 10
    """recommend: validate (rank every item for every user) every N epochs."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast through Accelerate (graphs this small gain nothing on a CPU)."""
    device: str = "auto"
    """auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps."""

    # --- run ---
    out: Path = Path("runs")
    """Root of the run folders: runs are written to OUT/graph/NAME."""
    name: str | None = None
    """Run folder name (default: a timestamp). With --resume and no name: the newest run."""
    resume: bool = False
    """Continue the run named by --name from its last checkpoint."""
    overwrite: bool = False
    """Replace an earlier run of the same --name (without it, a non-empty run folder is refused)."""
    progress: bool = True
    """Show a progress bar."""


# node classification: the GCN paper's recipe (2 layers, 16 hidden, dropout 0.5, Adam 0.01, L2 5e-4, 200 epochs)
QUICK = TrainConfig()
# seconds: what the tests run
TINY = TrainConfig(epochs=30, seeds=2, patience=0, progress=False)
# GAT's paper recipe (8 heads x 8 hidden, dropout 0.6, lr 0.005)
GAT = TrainConfig(model="gat", hidden=8, heads=8, dropout=0.6, lr=0.005, epochs=300)
# recommendation on the bundled MovieLens: LightGCN, 3 layers, 64 dimensions; the paper's lr 0.001 left it below
# MF after 100 epochs on these 39k interactions (recall@20 0.202 vs 0.209), lr 0.005 puts it clearly above (README)
RECOMMEND = TrainConfig(
    task="recommend",
    model="lightgcn",
    hidden=64,
    layers=3,
    lr=0.005,
    weight_decay=1e-4,
    epochs=200,
    min_steps=3800,  # the 200 epochs of the bundled ratings: 19 batches of 2048 an epoch
    eval_every=20,
    seeds=1,
)
RECOMMEND_TINY = TrainConfig(
    task="recommend",
    model="lightgcn",
    hidden=16,
    layers=2,
    lr=0.01,
    weight_decay=1e-4,
    epochs=3,
    batch_size=256,
    seeds=1,
    eval_every=1,
    progress=False,
)
# the LightGCN paper's recipe (He et al. 2020): 3 layers, 64 dims, Adam 0.001, batch 2048, L2 1e-4, 1 negative
LIGHTGCN_PAPER = TrainConfig(
    task="recommend",
    model="lightgcn",
    hidden=64,
    layers=3,
    lr=0.001,
    weight_decay=1e-4,
    batch_size=2048,
    epochs=1000,
    seeds=1,
    eval_every=20,
)
PRESETS: dict[str, TrainConfig] = {
    "tiny": TINY,
    "quick": QUICK,
    "gat": GAT,
    "recommend": RECOMMEND,
    "recommend-tiny": RECOMMEND_TINY,
    "lightgcn-paper": LIGHTGCN_PAPER,
}
DEFAULT_PRESET = {"node": "quick", "recommend": "recommend"}
"""The preset `train --task T` starts from when no --preset is given."""

RESUME_MAY_CHANGE = ("device", "progress", "mixed_precision")
"""Fields `train --resume` may change: how the run executes, not what it trains."""


def check_relations(cfg: TrainConfig) -> TrainConfig:
    """Rules between fields (each field alone is checked where it is declared): before any folder exists."""
    models = NODE_MODELS if cfg.task == "node" else RECOMMEND_MODELS
    if cfg.model not in models:
        raise UserError(f"--model {cfg.model} is not a {cfg.task} model; choose one of: {', '.join(models)}")
    if cfg.fanout and (cfg.task != "node" or len(cfg.fanout) != cfg.layers):
        raise UserError(
            f"--fanout {' '.join(map(str, cfg.fanout))}: give one number per layer (--layers {cfg.layers}), for --task node"
        )
    if cfg.task == "recommend" and cfg.seeds != 1:
        raise UserError(f"--seeds {cfg.seeds}: --task recommend trains one seed per run")
    return cfg


@dataclass
class EvalArgs:
    ckpt: Path | None = None
    """Run folder. Unset: the newest run under --runs."""
    runs: Path = Path("runs")
    """Root of the run folders (as train's --out)."""
    device: str = "auto"


@dataclass
class ExportArgs:
    ckpt: Path | None = None
    """Run folder. Unset: the newest run under --runs."""
    out: Path = Path("export")
    """Folder to create (refused if it exists and is not empty, unless --overwrite)."""
    runs: Path = Path("runs")
    overwrite: bool = False
    push_to_hub: HubRepoId = None
    """Upload the finished export folder to this Hugging Face Hub model repo ("your-name/model-name"; needs `hf
    auth login`)."""


@dataclass
class RecommendArgs:
    user: str | None = None
    """A user id of the training data (as in its file)."""
    likes: tuple[str, ...] = ()
    """A new user: item ids (MovieLens movieId) they like; recommendations from their items' embeddings."""
    k: Positive = 20
    export: Path = Path("export")
    """A folder written by `graph export` of a recommend run."""


@dataclass
class BenchArgs:
    what: Literal["sampling", "lightgcn"] = "sampling"
    """sampling: full-batch vs neighbour-sampled GraphSAGE on generated graphs of three sizes. lightgcn: one epoch
    of the lightgcn-paper preset on a generated interaction set of the Gowalla paper split's size."""
    device: str = "auto"
    profile: bool = False
    """Then profile training steps under torch.profiler (3 recorded after 2): sampling, sampled GraphSAGE steps on
    the 10k-node graph, loader included; lightgcn, LightGCN batch steps. Writes a Chrome trace (trace.json) and the
    top operators by self time (top_ops.txt, top_ops.md); the timings are taken without it."""
    profile_out: Path | None = None
    """Folder for the profile (default: runs/graph-profile/<timestamp>; giving it turns --profile on; an earlier
    profile there is replaced, any other non-empty folder refused)."""


@dataclass
class DepthArgs:
    depths: tuple[Positive, ...] = (2, 4, 8, 16)
    """Numbers of graph layers to train (the quick preset otherwise)."""
    seeds: Positive = 3
    model: Literal["gcn", "gcn-hand", "gcn-mp", "gat", "sage", "mlp"] = "gcn"
    preset: Literal["quick", "tiny", "gat"] = "quick"
    out: Path | None = None
    """Folder for oversmoothing.json and oversmoothing.png (unset: print only)."""


@dataclass
class DemoArgs:
    ckpt: Path | None = None
    """Run folder of a node run. Unset: the newest under --runs, else the quick model shipped with the package."""
    runs: Path = Path("runs")
    host: str = "127.0.0.1"
    port: Port = 7860
    share: bool = False
    """Open a public Gradio link (off unless asked)."""
    device: str = "auto"
