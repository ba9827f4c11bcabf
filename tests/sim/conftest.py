import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sim_root(tmp_path_factory):
    """Verilator builds: $EDGE3U_SIM_CACHE when set (reused between runs), else a fresh folder."""
    if os.environ.get("EDGE3U_SIM_CACHE"):
        return Path(os.environ["EDGE3U_SIM_CACHE"])
    return tmp_path_factory.mktemp("verilator")
