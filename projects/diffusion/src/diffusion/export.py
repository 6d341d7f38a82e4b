"""The `export` verb: the EMA pipeline of a run, copied out as a diffusers folder with its card.json.

pipe = ClassConditionalPipeline.from_pretrained("export")      # or UNet2DModel.from_pretrained(..., "unet")
"""

from __future__ import annotations

import json
import shutil

from .artifacts import find_run, load_card, pipeline_folder
from .config import ExportArgs


def export(args: ExportArgs) -> dict:
    run = find_run(args.ckpt, args.runs)
    source = pipeline_folder(run)
    out = args.out or run / "export"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(source, out)
    (out / "card.json").write_text(json.dumps(load_card(run), indent=2))
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return {"out": str(out), "format": "diffusers", "files": files}
