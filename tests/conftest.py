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
# The CLI picks OpenMP waiting from the machine's load average and notes a busy machine once
# training starts; a fixed choice keeps what the tests see (stderr lines) independent of the
# load. The tests of that choice clear it themselves.
os.environ.setdefault("GOMP_SPINCOUNT", "30000")


@pytest.fixture
def shared_data() -> Path:
    """The small real dSprites files of colleenjg/neuromatch_ssl_tutorial, when a development
    checkout has them beside it (tests that need them skip otherwise)."""
    if not (SHARED_DATA / "dsprites_downsampled.npz").exists():
        pytest.skip("real dSprites files (dsprites_downsampled.npz, dsprites_subset.npz) are not present")
    return SHARED_DATA
