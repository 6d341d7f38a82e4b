"""Citation graphs in the Planetoid format (Cora, CiteSeer, PubMed): nodes are papers with bag-of-words features,
edges are citations, the task is each paper's subject.

The bundled default is Cora (2,708 papers, 10,556 directed edges = 5,278 citations, 1,433 words, 7 classes) in
the raw files of the Planetoid repository (Yang et al. 2016, MIT licence in data/cora/LICENSE), read by
torch-geometric's own reader, offline. The split is the public one of the GCN and GAT papers: 20 labelled papers
per class for training (140), 500 for validation, 1,000 for the test.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from dlshared.cli import UserError

CORA = Path(__file__).parent / "data" / "cora"
PLANETOID_FILES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
# the label order of the Planetoid Cora files (identified by the class sizes: 818 Neural_Networks, ...)
CORA_CLASSES = (
    "Theory",
    "Reinforcement_Learning",
    "Genetic_Algorithms",
    "Neural_Networks",
    "Probabilistic_Methods",
    "Case_Based",
    "Rule_Learning",
)


@dataclass
class NodeData:
    graph: object
    """A torch_geometric Data: x [N, F] features, edge_index [2, E], y [N], train/val/test_mask [N]."""
    name: str
    classes: tuple[str, ...]
    source: str

    @property
    def num_features(self) -> int:
        return self.graph.x.shape[1]


def planetoid_name(folder: Path) -> str:
    """The data set's name from its file names: `ind.citeseer.x` -> citeseer."""
    names = {m.group(1) for p in folder.glob("ind.*.x") if (m := re.fullmatch(r"ind\.(.+)\.x", p.name))}
    if len(names) != 1:
        found = f"several ({', '.join(sorted(names))})" if names else "none"
        raise UserError(f"{folder}: expected the files of one Planetoid data set (ind.<name>.x, ...), found {found}")
    return names.pop()


def load_planetoid(folder: Path | None = None) -> NodeData:
    """A Planetoid data set from a folder of its raw files (or their raw/ subfolder); unset: the bundled Cora."""
    from torch_geometric.io import read_planetoid_data

    folder = Path(folder) if folder is not None else CORA
    if not folder.is_dir():
        raise UserError(f"--data {folder}: not a folder (give a folder of Planetoid raw files, ind.<name>.x ...)")
    if not any(folder.glob("ind.*.x")) and (folder / "raw").is_dir():
        folder = folder / "raw"
    name = planetoid_name(folder)
    missing = [f"ind.{name}.{part}" for part in PLANETOID_FILES if not (folder / f"ind.{name}.{part}").is_file()]
    if missing:
        raise UserError(f"{folder}: missing {', '.join(missing)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the reader's pickle/scipy deprecation notices
            graph = read_planetoid_data(str(folder), name)
    except Exception as err:  # a truncated or foreign file: name the folder, not a traceback
        raise UserError(
            f"{folder}: cannot read the Planetoid files of {name!r} ({type(err).__name__}: {err})"
        ) from None
    # the GCN paper's preprocessing: each paper's word counts divided by its number of words (rows sum to 1)
    graph.x = graph.x / graph.x.sum(dim=1, keepdim=True).clamp(min=1)
    num_classes = int(graph.y.max()) + 1
    classes = CORA_CLASSES if name == "cora" else tuple(f"class {i}" for i in range(num_classes))
    source = "bundled Cora (Planetoid split)" if folder == CORA else f"{folder} ({name}, Planetoid split)"
    return NodeData(graph, name, classes, source)


def split_sizes(graph) -> dict[str, int]:
    return {split: int(getattr(graph, f"{split}_mask").sum()) for split in ("train", "val", "test")}
