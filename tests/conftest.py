import os
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
sys.path.insert(0, str(TESTS))
# Subprocesses (CLI, DDP workers) import the toy plugin too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    """The small real dSprites files of colleenjg/neuromatch_ssl_tutorial, when a development
    checkout has them beside it (tests that need them skip otherwise)."""
    if not (SHARED_DATA / "dsprites_downsampled.npz").exists():
        pytest.skip("real dSprites files (dsprites_downsampled.npz, dsprites_subset.npz) are not present")
    return SHARED_DATA
