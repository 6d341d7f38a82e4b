"""The `export` verb: the EMA pipeline of a run, copied out as a diffusers folder with its card.json.

pipe = ClassConditionalPipeline.from_pretrained("export")      # or UNet2DModel.from_pretrained(..., "unet")
"""

from __future__ import annotations

import json
import shutil

from dlshared.outputs import staged_output

from .artifacts import find_run, load_card, load_model, pipeline_folder
from .config import ExportArgs


def export(args: ExportArgs) -> dict:
    run = find_run(args.ckpt, args.runs)
    source = pipeline_folder(run)
    out = (args.out or run / "export").resolve()
    load_model(run)  # a damaged or foreign file is refused here, not copied into an export that cannot load
    # staged, then renamed: a user's folder is refused (never deleted), an earlier export replaced only when asked
    with staged_output(out, args.overwrite, sources=(run,)) as stage:
        shutil.copytree(source, stage, dirs_exist_ok=True)
        (stage / "card.json").write_text(json.dumps(load_card(run), indent=2), encoding="utf-8")
        files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    return {"out": str(out), "format": "diffusers", "files": files}
