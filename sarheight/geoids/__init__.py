"""Geoid grids that ship with sarheight (package data; ``README.md`` says where they come
from). :data:`sarheight.dem.PACKAGED_EGM96` is the path :func:`sarheight.dem.open_dem`
uses."""
