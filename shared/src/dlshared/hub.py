"""`export --push-to-hub REPO_ID`: upload a finished export folder to the Hugging Face Hub, with huggingface_hub.

The folder is uploaded as it is (weights, config.json, the model card README.md, ONNX files where the project
writes them), in one commit, after the export is complete: a failed upload never leaves a half-written folder,
and the export stays on disk to push again (`hf upload REPO_ID FOLDER` does the same by hand).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from .cli import Check, UserError, short_reason

if TYPE_CHECKING:  # huggingface_hub is imported when a push happens, not by every CLI that declares the flag
    from huggingface_hub import HfApi


def is_repo_id(value: str | None) -> bool:
    """ "user/name" or "name" (the token's own namespace), as the Hub accepts them."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if value is None:
        return True
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return value.count("/") <= 1


HubRepoId = Annotated[
    str | None,
    Check(is_repo_id, 'a Hub repo id such as "your-name/model-name"', ("a/b/c", "bad name", "x--y/z")),
]
"""The type of an `export --push-to-hub` field: checked with the other flags, before any work starts."""


def push_folder(folder: str | os.PathLike, repo_id: str, api: HfApi | None = None) -> str:
    """Create `repo_id` (a model repo; kept if it exists) and upload `folder` to it in one commit. Returns the
    commit's URL. Without a token, or without network, a one-line UserError says what to do."""
    from huggingface_hub import HfApi, get_token

    folder = Path(folder)
    api = api or HfApi()
    if api.token is None and get_token() is None:
        raise UserError(
            f"--push-to-hub {repo_id}: no Hugging Face token (run `hf auth login` or set HF_TOKEN); the export is"
            f" in {folder}, push it later with `hf upload {repo_id} {folder}`"
        )
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=folder,
            commit_message=f"Upload {folder.name} (pytorch-capstones export)",
        )
    except Exception as err:  # offline, refused token, name taken: huggingface_hub's errors carry the reason
        raise UserError(
            f"--push-to-hub {repo_id} failed ({short_reason(err)}); the export is in {folder}, push it later with"
            f" `hf upload {repo_id} {folder}`"
        ) from None
    return commit.commit_url
