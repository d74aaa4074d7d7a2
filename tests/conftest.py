import pytest

from gzh.testing import shared_data_dir


@pytest.fixture(scope="session")
def shared_data():
    "The read-only real image sets beside the project (`gzh.testing.shared_data_dir`); skips where they are absent."
    d = shared_data_dir()
    if d is None: pytest.skip("../shared/data is absent (or $GZH_SHARED_DATA unset): real-image tests need it")
    return d
