"""Doctests of README.md (collected by ``make test``) run in a temporary folder, so that
the files their examples write do not land in the repository."""

import pytest


@pytest.fixture(autouse=True)
def _doctests_in_a_temporary_folder(request, tmp_path, monkeypatch):
    if isinstance(request.node, pytest.DoctestItem):
        monkeypatch.chdir(tmp_path)
