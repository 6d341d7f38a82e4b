"""`graph bench`: what neighbour sampling buys (day 32, "scale") and what a LightGCN epoch costs (day 39), measured.

    uv run graph bench --what sampling     # full-batch vs sampled GraphSAGE epochs on generated graphs
    uv run graph bench --what lightgcn     # one epoch of the lightgcn-paper preset at Gowalla's size
    uv run graph bench --what sampling --profile   # then a sampled step under torch.profiler: trace.json, top_ops

The graphs are stochastic block models generated with torch: planted communities, most edges inside a
community, features that are noisy community means. A GraphSAGE learns them (the neighbours' mean removes the
noise: ~99.7% test accuracy against ~44% for an MLP at 10k nodes), and their size is a parameter: three sizes,
the largest with over a million edges. What to expect: sampled training needs several times less memory, and
its per-step cost does not grow with the graph; on graphs this small it is not faster per epoch, because the
2-hop neighbourhoods of 1,024 seeds (up to 1024 * (1 + 10 + 100) nodes) cover much of the graph.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch_geometric.data import Data


def sbm_graph(
    num_nodes: int,
    num_blocks: int,
    avg_degree: float,
    features: int,
    seed: int,
    *,
    p_in: float = 0.8,
    signal: float = 1.0,
    train_fraction: float = 0.2,
    val_fraction: float = 0.2,
) -> Data:
    """A planted-partition graph: `num_blocks` communities (the classes), `num_nodes * avg_degree` directed edges
    (each undirected edge in both directions, no self-loops, no duplicates); each edge's second end lies in the
    first end's community with probability `p_in`, anywhere otherwise. Features: the community's random mean
    plus unit Gaussian noise ([N, features]); `signal` scales the distance between the means. Masks: a random
    `train_fraction` / `val_fraction` / rest split.

    Never a dense N x N matrix (torch_geometric.utils.stochastic_blockmodel_graph enumerates all N^2 pairs):
    edges are drawn directly, O(E) time and memory.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(num_blocks, (num_nodes,), generator=g)  # [N] community = class
    members = y.argsort()  # [N] node ids grouped by community
    size = torch.bincount(y, minlength=num_blocks)  # [K]
    block_start = size.cumsum(0) - size  # [K] where each community begins in `members`
    wanted = -(-num_nodes * avg_degree // 2)  # undirected edges: ceil(N * d / 2)
    keys = torch.empty(0, dtype=torch.long)  # each undirected edge {a, b}, a < b, as the number a * N + b
    while keys.numel() < wanted:  # one round nearly always does: self-loops and repeats are rare
        draw = int((wanted - keys.numel()) * 1.1) + 16
        a = torch.randint(num_nodes, (draw,), generator=g)
        inside = torch.rand(draw, generator=g) < p_in
        offset = (torch.rand(draw, generator=g) * size[y[a]]).long()  # a uniform member of a's community
        b = torch.where(inside, members[block_start[y[a]] + offset], torch.randint(num_nodes, (draw,), generator=g))
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        keys = torch.cat([keys, (lo * num_nodes + hi)[lo != hi]]).unique()
    keys = keys[torch.randperm(keys.numel(), generator=g)[: int(wanted)]]  # exactly `wanted`, a random subset
    lo, hi = keys // num_nodes, keys % num_nodes
    edge_index = torch.stack([torch.cat([lo, hi]), torch.cat([hi, lo])])  # [2, 2 * wanted]: both directions

    # two means lie about 2 * signal noise-deviations apart: signal 1 leaves a node's own features ambiguous, the
    # mean over its ~avg_degree neighbours (p_in of them from its own community) is much clearer
    means = torch.randn(num_blocks, features, generator=g) * signal * (2 / features) ** 0.5  # [K, F]
    x = means[y] + torch.randn(num_nodes, features, generator=g)  # [N, F]
    split = torch.randperm(num_nodes, generator=g)
    n_train, n_val = int(train_fraction * num_nodes), int(val_fraction * num_nodes)
    masks = {}
    for name, ids in (
        ("train", split[:n_train]),
        ("val", split[n_train : n_train + n_val]),
        ("test", split[n_train + n_val :]),
    ):
        masks[f"{name}_mask"] = torch.zeros(num_nodes, dtype=torch.bool).index_fill_(0, ids, True)
    return Data(x=x, edge_index=edge_index, y=y, num_nodes=num_nodes, **masks)


# --- full-batch vs sampled GraphSAGE ---------------------------------------------------------------------------
SIZES = (10_000, 30_000, 100_000)  # nodes; at AVG_DEGREE 12: 120k, 360k and 1.2M directed edges
AVG_DEGREE, BLOCKS, FEATURES, HIDDEN = 12, 8, 128, 64
FANOUT, BATCH_SIZE = (10, 10), 1024


class PeakMemory:
    """Peak memory in MiB of a `with` block above what was in use when it began.

    CUDA: the caching allocator's own high-water mark (exact). CPU: torch's CPU allocations are invisible to
    tracemalloc (it sees Python's allocator only), and getrusage's ru_maxrss is a high-water mark for the whole
    life of the process that cannot be reset. So a thread samples the resident set size (psutil) every
    millisecond; the peaks of a training step (activations kept for backward, then gradients) last far longer
    than that. Each measurement runs in a fresh process (see `isolated`), so memory freed by an earlier one and
    kept by the allocator neither inflates the baseline nor hides the next one's peak.
    """

    def __init__(self, device: torch.device):
        self.device, self.mib = device, 0.0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        import threading

        import psutil

        process, self.done = psutil.Process(), threading.Event()
        self.base = self.peak = process.memory_info().rss

        def watch() -> None:
            while not self.done.wait(0.001):
                self.peak = max(self.peak, process.memory_info().rss)

        self.thread = threading.Thread(target=watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.done.set()
            self.thread.join()
            peak = self.peak
        self.mib = round((peak - self.base) / 2**20, 1)


def isolated(fn, *args):
    """`fn(*args)` in a fresh Python process (spawned: nothing inherited from this one), its result returned."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def sage_training(num_nodes: int, device: torch.device):
    """What `measure_sampling` trains: the generated graph, the project's GraphSAGE (2 layers, 64 hidden, no
    dropout) with Adam, the neighbour loader over the training nodes, and fit's step on any (sub)graph."""
    import torch.nn.functional as F

    from .model import NodeClassifier
    from .sampler import neighbor_loader

    torch.manual_seed(0)
    graph = sbm_graph(num_nodes, BLOCKS, AVG_DEGREE, FEATURES, seed=0).to(device)
    # dropout off: on a CPU its random draws (one per feature of every node) would dominate both kinds of step,
    # and they are not what sampling changes
    model = NodeClassifier("sage", FEATURES, BLOCKS, HIDDEN, len(FANOUT), 0.0, 1).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = neighbor_loader(graph, FANOUT, graph.train_mask.cpu(), BATCH_SIZE, shuffle=True)

    def step(x, edge_index, y, mask) -> None:  # fit's step, on any graph: the loss on `mask`'s nodes only
        loss = F.cross_entropy(model(x, edge_index)[mask], y[mask])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return graph, loader, step


def measure_sampling(num_nodes: int, mode: str, device_name: str) -> dict:
    """One row of the table: GraphSAGE (`sage_training`) trained for at least a second of epochs on
    `sbm_graph(num_nodes)`, full-batch or on sampled mini-batches; seconds per epoch and peak memory."""
    import time

    device = torch.device(device_name)
    graph, loader, step = sage_training(num_nodes, device)

    def epoch() -> int:  # returns its number of steps
        if mode == "full":
            step(graph.x, graph.edge_index, graph.y, graph.train_mask)
            return 1
        for batch in loader:
            step(batch.x, batch.edge_index, batch.y, slice(0, batch.batch_size))  # the seeds come first
        return len(loader)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    epoch()  # warm-up: lazy initialisations, first allocations
    with PeakMemory(device) as peak:  # one epoch watched for memory, apart from the timing (the watcher costs)
        steps = epoch()
    sync()
    started, epochs = time.perf_counter(), 0
    while epochs == 0 or time.perf_counter() - started < 1.0:  # at least a second of whole epochs
        epoch()
        epochs += 1
    sync()
    seconds = (time.perf_counter() - started) / epochs
    row = {"nodes": num_nodes, "edges": graph.num_edges, "training": mode, "epoch_s": round(seconds, 3)}
    row |= {"steps": steps, "peak_mib": peak.mib}
    if mode == "sampled":  # the loader alone (sampling + gathering the features): a batch before the model
        started, nodes = time.perf_counter(), 0
        for batch in loader:
            nodes += batch.num_nodes
        row["sample_ms_per_batch"] = round((time.perf_counter() - started) / steps * 1e3, 1)
        row["nodes_per_batch"] = round(nodes / steps)
    return row


def profile_sampled_step(out: Path, device: torch.device, num_nodes: int = SIZES[0]) -> dict:
    """`bench --profile`: sampled GraphSAGE steps on the smallest graph under torch.profiler, each step drawing
    its mini-batch first (sampling and feature gathering are part of what a sampled step costs)."""
    from dlshared.profiling import profile_steps

    graph, loader, step = sage_training(num_nodes, device)

    def batches():
        while True:
            yield from loader

    stream = batches()

    def sampled_step() -> None:
        batch = next(stream)
        step(batch.x, batch.edge_index, batch.y, slice(0, batch.batch_size))

    return {"nodes": num_nodes, **profile_steps(sampled_step, out)}


def bench_sampling(device: torch.device) -> dict:
    rows = [isolated(measure_sampling, n, mode, str(device)) for n in SIZES for mode in ("full", "sampled")]
    columns = ("nodes", "edges", "training", "epoch_s", "steps", "peak_mib", "sample_ms_per_batch", "nodes_per_batch")
    print(
        f"GraphSAGE on stochastic block models ({FEATURES} features, {HIDDEN} hidden), fanout "
        f"{list(FANOUT)}, batch {BATCH_SIZE}, device {device}; peak_mib: above the loaded graph, model and sampler"
    )
    print("  ".join(f"{c:>{len(c)}}" for c in columns))
    for row in rows:
        print("  ".join(f"{row.get(c, ''):>{len(c)}}" for c in columns))
    return {"what": "sampling", "device": str(device), "fanout": list(FANOUT), "batch_size": BATCH_SIZE, "table": rows}


# --- one LightGCN epoch at the size of the Gowalla benchmark ------------------------------------------------------
GOWALLA = {"users": 29_858, "items": 40_981, "train_interactions": 810_128}  # the LightGCN paper's split


def gowalla_like(seed: int = 0, users: int = 29_858, items: int = 40_981, interactions: int = 810_128) -> torch.Tensor:
    """Distinct (user, item) pairs [2, E] with power-law-ish activity and popularity: user u is drawn with
    probability ~ 1 / (u + 1)^0.5 and item i ~ 1 / (i + 1)^0.7 (ranks shuffled), as check-in data looks."""
    g = torch.Generator().manual_seed(seed)
    user_p = torch.arange(1, users + 1).double() ** -0.5
    item_p = torch.arange(1, items + 1).double()[torch.randperm(items, generator=g)] ** -0.7
    keys = torch.empty(0, dtype=torch.long)  # user * items + item
    while keys.numel() < interactions:  # repeats of the same pair are dropped: draw until there are enough
        draw = int((interactions - keys.numel()) * 1.2) + 16
        u = torch.multinomial(user_p, draw, replacement=True, generator=g)
        i = torch.multinomial(item_p, draw, replacement=True, generator=g)
        keys = torch.cat([keys, u * items + i]).unique()
    keys = keys[torch.randperm(keys.numel(), generator=g)[:interactions]]
    return torch.stack([keys // items, keys % items])  # [2, E]


def lightgcn_epoch_bench(device: torch.device, profile_out: Path | None = None) -> dict:
    """One epoch of the lightgcn-paper preset (3 layers, 64 dims, batch 2048, Adam 0.001, one negative per
    positive) on a generated interaction set of Gowalla's size, with train_recommend.py's building blocks; with
    `profile_out`, then a few more of its steps under torch.profiler (dlshared.profiling)."""
    import time

    from .config import PRESETS
    from .recommender import bpr_loss, build_recommender, sample_negatives, training_keys

    cfg = PRESETS["lightgcn-paper"]
    edges = gowalla_like()
    num_users, num_items = GOWALLA["users"], GOWALLA["items"]
    torch.manual_seed(cfg.seed)
    model = build_recommender("lightgcn", num_users, num_items, edges, cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    keys = training_keys(edges, num_items)
    g = torch.Generator().manual_seed(cfg.seed)
    model.train()
    with PeakMemory(device) as peak:
        started = time.perf_counter()
        order = torch.randperm(edges.shape[1], generator=g)
        users, pos = edges[0, order], edges[1, order]
        neg = sample_negatives(users, num_items, keys, g)  # part of the epoch's cost, as in training
        batches = torch.arange(len(users)).split(cfg.batch_size)

        def step(batch: torch.Tensor) -> torch.Tensor:
            u, p, n = users[batch].to(device), pos[batch].to(device), neg[batch].to(device)  # [B] each
            pos_scores, neg_scores, reg = model(u, p, n)  # every step propagates over the whole graph
            loss = bpr_loss(pos_scores, neg_scores) + cfg.weight_decay * reg
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss

        for batch in batches:
            loss = step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds, steps = time.perf_counter() - started, len(batches)
    result = {"what": "lightgcn", "device": str(device), **GOWALLA, "layers": cfg.layers, "dim": cfg.hidden}
    result |= {"batch_size": cfg.batch_size, "steps": steps, "epoch_s": round(seconds, 2)}
    result |= {"ms_per_step": round(seconds / steps * 1e3, 1), "triples_per_s": round(len(users) / seconds)}
    result |= {"peak_mib": peak.mib, "final_loss": round(loss.item(), 4)}
    if profile_out is not None:  # after the timing: the profiler slows the steps it records
        from dlshared.profiling import profile_steps

        again = iter(batches)
        result["profile"] = profile_steps(lambda: step(next(again)), profile_out)
    print(
        f"LightGCN ({cfg.layers} layers, {cfg.hidden} dims), one epoch on a Gowalla-sized set: "
        f"{seconds:.1f} s, {steps} steps of {cfg.batch_size}, {result['ms_per_step']} ms/step, device {device}"
    )
    return result


def bench(args) -> dict:
    """`graph bench --what sampling|lightgcn`: prints a table and returns it (the CLI prints it as JSON too)."""
    from dlshared.cli import UserError
    from dlshared.device import pick_device
    from dlshared.profiling import profile_folder

    from .config import PROJECT

    try:
        device = pick_device(args.device)
    except ValueError as err:
        raise UserError(str(err)) from None
    profile_out = profile_folder(PROJECT, args.profile, args.profile_out)
    if args.what == "lightgcn":
        return lightgcn_epoch_bench(device, profile_out)
    result = bench_sampling(device)
    if profile_out is not None:  # in this process, after the timed ones
        result["profile"] = profile_sampled_step(profile_out, device)
    return result
