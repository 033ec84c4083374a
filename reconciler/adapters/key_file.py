"""The key file for secret fingerprints: made once (mode 0600) beside the journal when no key is configured."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from reconciler.errors import ConfigError
from reconciler.state_dir import make_state_dir


def read_or_create_key(path: Path) -> tuple[bytes, bool]:
    """The key in ``path``, made first if missing (another process may make it at the same moment: the
    first one wins). Returns the key and whether this call created the file. Raises ConfigError, naming the
    path and the fix, when the file cannot be read or made."""
    created = False
    try:
        if not path.exists():
            make_state_dir(path.parent)  # .reconciler/ gets its .gitignore
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32))
                created = True
        key = path.read_text().strip().encode()
    except OSError as exc:
        raise ConfigError(
            f"cannot read or create the secret key file {path}: {exc.strerror or exc}; make its directory "
            "writable, or set RECONCILER_SECRET_KEY (or --journal to a writable place)"
        ) from None
    if not key:
        raise ConfigError(f"the secret key file {path} is empty; delete it or set RECONCILER_SECRET_KEY")
    return key, created
