"""The `graph` command: train, eval, export, recommend, bench, demo (see `graph <verb> --help`).

A verb that returns a dict has it printed as the last stdout line, one JSON object (dlshared.cli.run_cli).
"""

from __future__ import annotations

import sys
from pathlib import Path

from dlshared.cli import Command, run_cli

from .config import (
    DEFAULT_PRESET,
    PRESETS,
    PROJECT,
    RESUME_MAY_CHANGE,
    BenchArgs,
    DemoArgs,
    DepthArgs,
    EvalArgs,
    ExportArgs,
    RecommendArgs,
    TrainConfig,
)


def eval_command(args: EvalArgs) -> dict:
    """The saved model's accuracy on every split of its own graph (train's `model_test_accuracy`)."""
    from .artifacts import find_run, load_node_run
    from .evaluate import split_scores

    run = load_node_run(find_run(args.ckpt, args.runs), args.device)
    scores = split_scores(run.model, run.data.graph)
    return {"test_accuracy": scores["test"]["accuracy"], "data": run.data.source, "run_dir": str(run.dir), **scores}


def export_command(args: ExportArgs) -> dict:
    from .artifacts import NODE_CARD, find_run

    run_dir = find_run(args.ckpt, args.runs, required="metrics.json")
    if (run_dir / NODE_CARD).is_file():
        from .export import export_node

        result = export_node(run_dir, args.out, args.overwrite)
    else:
        from .serve_recs import export_recommender

        result = export_recommender(run_dir, args.out, args.overwrite)
    if args.push_to_hub:  # only a complete folder: the export has renamed its staging folder into place
        from dlshared.hub import push_folder

        result["pushed"] = push_folder(result["out"], args.push_to_hub)
    return result


def recommend_command(args: RecommendArgs) -> dict:
    from .serve_recs import recommend

    return {"recommendations": recommend(args.export, args.user, args.likes, args.k)}


def demo_command(args: DemoArgs) -> None:
    from dlshared.demo import serve

    from .artifacts import NODE_CARD, SHIPPED, load_node_run
    from .demo import build_demo
    from .train import train

    recs = exported_recommender(args.runs)  # the Movies tab, when a recommend run exists

    def build(run_dir: Path):
        return build_demo(load_node_run(run_dir, args.device), recs)

    serve(PROJECT, args, build, train, PRESETS["quick"], NODE_CARD, shipped=SHIPPED)


def exported_recommender(runs: Path) -> Path | None:
    """The newest finished recommend run, exported into a temporary folder for the demo (None: no such run)."""
    from dlshared.demo import scratch_folder
    from dlshared.runs import latest_run

    from .serve_recs import export_recommender
    from .train_recommend import INTERACTIONS_NAME

    run = latest_run(PROJECT, runs, required=INTERACTIONS_NAME)
    if run is None or not (run / "metrics.json").is_file():
        return None
    out = scratch_folder("graph-demo-") / "export"
    export_recommender(run, out)
    print(f"movies: recommendations from {run}", flush=True)
    return out


COMMANDS = {
    "train": Command(
        "graph.train:train",
        TrainConfig,
        "Train a node classifier (--task node, Cora) or a recommender (--task recommend, MovieLens).",
        PRESETS,
        "quick",
        hide=("history", "per_seed"),
        resumes=PROJECT,  # --resume: the run's own config.json, with the typed flags it may change on top
        may_change=RESUME_MAY_CHANGE,
    ),
    "eval": Command(eval_command, EvalArgs, "Accuracy of a node run's model on every split of its graph."),
    "export": Command(export_command, ExportArgs, "Export a run: weights + card (node) or embeddings + faiss index."),
    "recommend": Command(recommend_command, RecommendArgs, "Top-k items for a user or for a few liked items."),
    "depth": Command("graph.smoothing:depth_sweep", DepthArgs, "Over-smoothing: accuracy and similarity vs depth."),
    "bench": Command(
        "graph.bench:bench",
        BenchArgs,
        "Throughput: sampled vs full-batch training; LightGCN epochs (--profile: a trace).",
    ),
    "demo": Command(
        demo_command, DemoArgs, "Serve the Gradio demo (the newest run, else the shipped quick model: no training)."
    ),
}


def with_task_preset(argv: list[str]) -> list[str]:
    """`train --task recommend` without --preset starts from the recommend preset, not the node default."""
    if argv[:1] != ["train"] or any(a == "--preset" or a.startswith("--preset=") for a in argv):
        return argv
    for i, arg in enumerate(argv):
        task = (
            arg.split("=", 1)[1]
            if arg.startswith("--task=")
            else argv[i + 1]
            if arg == "--task" and i + 1 < len(argv)
            else None
        )
        if task in DEFAULT_PRESET:
            return [*argv, "--preset", DEFAULT_PRESET[task]]
    return argv


def main(argv: list[str] | None = None) -> None:
    run_cli("graph", COMMANDS, with_task_preset(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
