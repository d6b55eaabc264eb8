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

__all__ = ["XML_LIMIT", "SafeProduct", "open_safe"]

#: The largest metadata file (manifest, annotation, calibration, noise XML) read from a
#: product, in bytes: real ones are a few MB; a small zip can hold a huge one.
XML_LIMIT = 64 * 2**20


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

    def member(self, href: str) -> str:
        """The path in ``fs`` of a file the manifest lists by ``href``, refusing one outside
        the product (an absolute path, ``..``, or a link leading out of a SAFE folder)."""
        if os.path.isabs(href) or href.startswith(("/", "\\")) or ".." in href.replace("\\", "/").split("/"):
            raise ProductError(
                f"the manifest of {self.name} lists {href!r}, outside the product: a product's files are in its "
                "folder; this one is damaged or was altered"
            )
        path = os.path.join(self.directory, os.path.normpath(href))
        if self.archive is None:
            folder = os.path.realpath(self.directory)
            if os.path.commonpath([folder, os.path.realpath(path)]) != folder:
                raise ProductError(
                    f"{href!r} of {self.name} is a link to {os.path.realpath(path)!r}, outside the product: this "
                    "product was altered; use one as downloaded"
                )
        return path

    def read(self, path: str, what: str, limit: int = XML_LIMIT) -> bytes:
        """The bytes of a metadata file of the product (a path in ``fs``), refusing one larger
        than ``limit`` before reading it (a small zip can hold a huge file)."""
        try:
            size = self.fs.size(path)
        except (OSError, KeyError):
            size = None
        if size is not None and size > limit:
            raise ProductError(
                f"{what} {path!r} of {self.name} is {size / 2**20:.0f} MB, more than the {limit / 2**20:.0f} MB a "
                "product's metadata file ever needs: this product is damaged or was altered"
            )
        with self.fs.open(path) as file:
            content = file.read(limit + 1)
        if len(content) > limit:
            raise ProductError(f"{what} {path!r} of {self.name} is larger than {limit / 2**20:.0f} MB: this product "
                               "is damaged or was altered")
        return content

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
