"""tests/vectors/ holds copies of the project's shared test vectors (../shared/vectors beside the
checkout) so a clone runs anywhere; where the shared folder is present, the copies must be identical."""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "vectors"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "vectors"


@pytest.mark.parametrize("name", ["assignment.json", "statistics.json"])
def test_the_copy_matches_the_shared_vectors(name):
    assert (HERE / name).stat().st_size > 1000
    if not (SHARED / name).exists():
        pytest.skip(f"{SHARED} is not beside this checkout (a clone elsewhere): the copy is what the tests use")
    assert (HERE / name).read_bytes() == (SHARED / name).read_bytes()
