"""The shipped catalogue against the real releases on the package index (`python -m packager patches check`).

Every release a variant covers must still ship exactly the pinned "before" files (and the diff must give
the pinned "after"); every release a `fixed` range covers must carry its evidence. A release newer than
every checked range is not an error (upstream publishes at its own pace) but is reported as a warning, so a
new library release shows up in every test run until somebody checks it and extends the catalogue.
"""

from __future__ import annotations

import warnings

import pytest

from packager.patching.check import check_catalog, render_report
from packager.patching.meta import default_catalog


@pytest.mark.network
@pytest.mark.slow
def test_every_catalogue_patch_matches_every_release_it_covers() -> None:
    patches = default_catalog()
    assert patches, "the built-in catalogue is empty"
    report = check_catalog(patches)
    assert report.ok(), render_report(report)
    checked = {p.id: len(p.releases) for p in report.patches}
    assert all(n > 0 for n in checked.values()), f"a patch covers no release on the index: {checked}"
    newer = [e for e in report.errors(strict=True) if "unchecked newer release" in e]
    if newer:
        warnings.warn("releases newer than every checked one (check them, then extend the catalogue): "
                      + "; ".join(newer), stacklevel=1)
