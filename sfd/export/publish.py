"""`push_to_hub`: upload an exported weights folder to a Hugging Face Hub model repo."""

from __future__ import annotations

from pathlib import Path


def push_to_hub(folder: str | Path, repo_id: str, *, api=None, private: bool | None = None,
                commit_message: str = "Upload SFD weights", revision: str | None = None) -> str:
    """Create the repo if needed (`exist_ok`) and upload `folder` as one commit; returns the commit's URL.

    `api`: an `huggingface_hub.HfApi` (default: a new one, which takes the token from the
    environment or the login cache); anything with the same two methods works, which is how the
    tests check the calls without a network.
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                               commit_message=commit_message, revision=revision)
    return str(getattr(commit, "commit_url", commit))
