from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from gzh.testing import shared_data_dir
from galaxies import blob_galaxies


@pytest.fixture(scope="session")
def shared_data():
    "The read-only real image sets beside the project (`gzh.testing.shared_data_dir`); skips where they are absent."
    d = shared_data_dir()
    if d is None: pytest.skip("../shared/data is absent (or $GZH_SHARED_DATA unset): real-image tests need it")
    return d


@pytest.fixture
def stand_in_cache():
    "A 40-galaxy stand-in for a GalaxyCache: random uint8 images and an aligned catalogue."
    rng = np.random.default_rng(0)
    return SimpleNamespace(images=rng.integers(0, 256, (40, 3, 16, 16), dtype=np.uint8),
                           catalog=pd.DataFrame(dict(id=[f'g{i}' for i in range(40)], spiral=[0, 1] * 20)))


@pytest.fixture
def blob_batch():
    "Four synthetic galaxies as a float batch (4, 3, 48, 48) and their masks (`galaxies.blob_galaxies`)."
    torch.manual_seed(0)
    return blob_galaxies()
