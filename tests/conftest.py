from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    "The read-only real image sets beside the project (`../shared/data`); skips where they are absent."
    if not SHARED_DATA.is_dir(): pytest.skip(f"{SHARED_DATA} is absent: real-image tests need ../shared/data")
    return SHARED_DATA
