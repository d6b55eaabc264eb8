"""Output paths checked before any work: folders that exist and can be written.

Light on purpose (the standard library only): the command line checks its outputs with
it before it imports anything heavy.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InvalidInputError


def check_writable_folder(path: str | os.PathLike[str], what: str) -> Path:
    """The folder of the output file ``path``, after checking before any work that it exists
    and a file can be written there; ``what`` names the output in messages."""
    target = Path(path)
    if not os.fspath(path).strip():
        raise InvalidInputError(f"{what}: the path is empty; give the path of the file to write")
    if target.is_dir():
        raise InvalidInputError(f"{what} {os.fspath(path)!r} is a folder: give the path of the file to write")
    folder = target.parent
    if not folder.is_dir():
        raise InvalidInputError(f"output folder {str(folder)!r} does not exist: create it first")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".sarheight-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise InvalidInputError(
            f"{what} {os.fspath(path)!r} cannot be written: the folder {str(folder)!r} is not writable "
            f"({error.strerror}); choose another place"
        ) from None
    return folder
