"""Directories the reconciler creates for its own files (state database, journal, secret key).

A ``.reconciler/`` directory made inside a manifests repository gets a ``.gitignore`` holding ``*``, so
``git add -A`` never commits the state, the journal or the key.
"""

from __future__ import annotations

from pathlib import Path

PRIVATE_DIR_NAME = ".reconciler"
GITIGNORE = "*\n"


def make_state_dir(folder: Path) -> None:
    """``mkdir -p folder``; every ``.reconciler`` directory this call creates gets its ``.gitignore``.

    An existing directory is left as it is: the user may have chosen to track parts of it.
    """
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for created in missing:
        if created.name == PRIVATE_DIR_NAME:
            try:
                with (created / ".gitignore").open("x", encoding="utf-8") as handle:
                    handle.write(GITIGNORE)
            except FileExistsError:
                pass  # another process created the directory at the same moment and wrote it
