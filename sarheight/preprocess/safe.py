"""The SAFE container of Sentinel products: a directory, its manifest, or a zip of it.

Sentinel-1 and Sentinel-2 products both come as a ``*.SAFE`` folder whose
``manifest.safe`` lists the product's files; they are downloaded either as that folder or
as a ``.zip`` holding it. :func:`open_safe` accepts the three forms and gives a
:class:`SafeProduct`: an fsspec file system in which the manifest and every file it
lists can be opened the same way whatever the form, and a GDAL path for the rasters.
What the manifest says is left to each mission's reader.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path

import fsspec

from ..errors import MissingInputError, ProductError

__all__ = ["SafeProduct", "open_safe"]


@dataclasses.dataclass(frozen=True)
class SafeProduct:
    """An opened SAFE product: where its manifest is and how to read its files.

    Attributes
    ----------
    path : pathlib.Path
        The path as given (user directory expanded): the ``.SAFE`` directory, its
        ``manifest.safe``, or the ``.zip``.
    fs : fsspec.AbstractFileSystem
        The local file system, or a zip file system over the archive. Open the manifest
        and the files it lists with ``fs.open``.
    manifest : str
        The path of ``manifest.safe`` in ``fs``: absolute or as given for a directory,
        relative to the archive root for a zip.
    archive : pathlib.Path or None
        The zip file (resolved), or None for an unzipped product.
    """

    path: Path
    fs: fsspec.AbstractFileSystem
    manifest: str
    archive: Path | None

    @property
    def directory(self) -> str:
        """The product folder in ``fs``: the manifest's directory, against which its hrefs resolve."""
        return os.path.dirname(self.manifest)

    @property
    def name(self) -> str:
        """The product name: the ``.SAFE`` folder's name, or the zip's name when the zip
        holds the manifest at its root."""
        return Path(self.directory).name or self.path.name

    def gdal_path(self, member: str) -> str:
        """A path GDAL (rasterio) opens for a file of the product given by its path in ``fs``:
        the file itself, or a ``/vsizip/`` path into a zipped SAFE."""
        return f"/vsizip/{self.archive}/{member.lstrip('/')}" if self.archive is not None else member


def open_safe(path: str | os.PathLike[str], *, mission: str) -> SafeProduct:
    """Open a SAFE product given as a ``.SAFE`` directory, its ``manifest.safe`` or a zip.

    Only the container is checked (the manifest exists, once); the manifest itself is
    not read.

    Parameters
    ----------
    path : the ``.SAFE`` directory, its ``manifest.safe``, or a ``.zip`` holding one
        SAFE (at its root or in a folder).
    mission : the mission named in error messages, e.g. "Sentinel-1".

    Returns
    -------
    SafeProduct

    Raises
    ------
    MissingInputError
        ``path`` does not exist.
    ProductError
        a zip that holds no or several ``manifest.safe``; a directory without
        ``manifest.safe``; a file that is neither a zip nor a ``manifest.safe``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingInputError(
            f"{mission} product {str(path)!r} does not exist: give a .SAFE directory, its "
            "manifest.safe or a .zip of the SAFE"
        )
    if path.is_file() and zipfile.is_zipfile(path):
        fs = fsspec.filesystem("zip", fo=str(path))
        manifests = [name for name in fs.find("") if name.endswith("manifest.safe")]
        if len(manifests) != 1:
            raise ProductError(
                f"{str(path)!r} is a zip file but holds {len(manifests)} manifest.safe files: "
                f"expected one zipped {mission} SAFE product"
            )
        return SafeProduct(path, fs, manifests[0], path.resolve())
    manifest = path / "manifest.safe" if path.is_dir() else path
    if manifest.name != "manifest.safe" or not manifest.exists():
        raise ProductError(
            f"{str(path)!r} is not a {mission} SAFE product (no manifest.safe): give the .SAFE "
            "directory as downloaded, or its .zip"
        )
    return SafeProduct(path, fsspec.filesystem("file"), str(manifest), None)
