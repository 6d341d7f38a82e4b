"""`multimodal index` and `multimodal search`: a folder of images as a faiss index, queried by text or by image.

    uv run multimodal index --images photos/ --out photos-index/      # again later: only new or changed files
    uv run multimodal search "two red circles" --index photos-index/
    uv run multimodal search --image query.png --index photos-index/

The index folder holds vectors.safetensors (one normalised embedding per image, the source of truth),
files.json (each image's path relative to the folder, size and modification time, in vector order),
images.faiss (an exact inner-product index over the vectors: cosine similarity) and index.json (the run it was
embedded with). Indexing again re-embeds only files whose size or modification time changed, and drops the ones
that are gone; any other run's model is refused (its vectors live in another space).
"""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import torch
from safetensors.torch import load_file, save_file

from dlshared.cli import UserError
from dlshared.outputs import MARKER, staged_output

from .artifacts import ClipRun, find_run, load_run
from .data import IMAGE_SUFFIXES, open_image
from .evaluate import embed_texts

MAX_IMAGE_BYTES = 50 * 2**20
"""Files above this size are skipped (and named), not read."""


def image_files(folder: Path) -> tuple[list[Path], list[str]]:
    """Regular image files that resolve inside `folder` (links out of it are skipped), under the size limit;
    and what was skipped, with why."""
    root, files, skipped = folder.resolve(), [], []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if not path.resolve().is_relative_to(root):
            skipped.append(f"{path}: a link out of {folder}")
        elif path.stat().st_size > MAX_IMAGE_BYTES:
            skipped.append(f"{path}: over {MAX_IMAGE_BYTES // 2**20} MB")
        else:
            files.append(path)
    return files, skipped


@torch.no_grad()
def embed_files(run: ClipRun, paths: list[Path], batch_size: int = 64) -> torch.Tensor:
    out = [torch.zeros(0, int(run.model.text_projection.shape[1]))]
    for start in range(0, len(paths), batch_size):
        images = torch.stack([run.preprocess(open_image(p)) for p in paths[start : start + batch_size]])
        out.append(torch.nn.functional.normalize(run.model.encode_image(images.to(run.device)).float(), dim=-1).cpu())
    return torch.cat(out)  # [N, D]


def read_index(folder: Path) -> tuple[dict, list[dict], torch.Tensor]:
    try:
        meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        files = json.loads((folder / "files.json").read_text(encoding="utf-8"))
        vectors = load_file(str(folder / "vectors.safetensors"))["vectors"]
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{folder} is not a readable multimodal index ({type(err).__name__}); index again") from None
    if len(files) != len(vectors):
        raise UserError(f"{folder}: {len(files)} files but {len(vectors)} vectors; index again with --overwrite")
    return meta, files, vectors


def index(args) -> dict:
    """Embed the images of args.images into args.out, reusing the vectors of unchanged files."""
    images = Path(args.images)
    if not images.is_dir():
        raise UserError(f"--images {images}: no such folder")
    run = load_run(find_run(args.ckpt, args.runs), args.device)
    out = Path(args.out).resolve()
    previous: dict[str, tuple[dict, torch.Tensor]] = {}
    if (out / MARKER).is_file() and (out / "index.json").is_file():  # an index this command wrote: update it
        meta, old_files, old_vectors = read_index(out)
        if meta["run"] != str(run.dir.resolve()):
            raise UserError(f"{out} was embedded with {meta['run']}, not {run.dir}; give another --out")
        previous = {f["path"]: (f, v) for f, v in zip(old_files, old_vectors, strict=True)}
    files, skipped = image_files(images)
    entries, vectors, todo = [], [], []
    for path in files:
        stat = path.stat()
        entry = {"path": str(path.relative_to(images)), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        kept = previous.get(entry["path"])
        if kept is not None and kept[0] == entry:
            vectors.append(kept[1])
        else:
            vectors.append(None)
            todo.append(len(entries))
        entries.append(entry)
    fresh = embed_files(run, [images / entries[i]["path"] for i in todo])
    for row, i in enumerate(todo):
        vectors[i] = fresh[row]
    matrix = torch.stack(vectors) if vectors else torch.zeros(0, fresh.shape[1])  # [N, D]
    with staged_output(out, overwrite=True, sources=(images,)) as stage:
        save_file({"vectors": matrix.contiguous()}, str(stage / "vectors.safetensors"))
        (stage / "files.json").write_text(json.dumps(entries), encoding="utf-8")
        (stage / "index.json").write_text(
            json.dumps({"run": str(run.dir.resolve()), "images": str(images.resolve())}), encoding="utf-8"
        )
        faiss_index = faiss.IndexFlatIP(matrix.shape[1])
        faiss_index.add(matrix.numpy())
        faiss.write_index(faiss_index, str(stage / "images.faiss"))
    for line in skipped:
        print(f"skipped {line}")
    kept_count = len(entries) - len(todo)
    return {"out": str(out), "images": len(entries), "embedded": len(todo), "reused": kept_count, "skipped": skipped}


def search(args) -> dict:
    """The k indexed images closest to a text (args.query) or to an image (args.image)."""
    folder = Path(args.index)
    if (args.query is None) == (args.image is None):
        raise UserError('give a text query or --image PATH (one of them): search "two red circles" --index DIR')
    if args.query is not None and not args.query.strip():
        raise UserError("the text query is empty")
    if not (folder / "index.json").is_file():
        raise UserError(f"--index {folder}: not an index; make one with `multimodal index --images DIR --out {folder}`")
    meta, files, _ = read_index(folder)
    run = load_run(Path(meta["run"]), args.device)
    if args.query is not None:
        query = embed_texts(run.model, run.tokenizer, [args.query[:1000]], run.device).cpu()
    else:
        query = embed_files(run, [Path(args.image)])
    faiss_index = faiss.read_index(str(folder / "images.faiss"))
    scores, rows = faiss_index.search(query.numpy(), min(args.k, len(files)))
    hits = [
        {"file": str(Path(meta["images"]) / files[r]["path"]), "score": round(float(s), 4)}
        for s, r in zip(scores[0], rows[0], strict=True)
        if r >= 0
    ]
    return {"hits": hits}
