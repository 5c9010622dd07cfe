import pytest

from resnas.data import DataConfig, load_data


@pytest.fixture(scope="session")
def digits():
    return load_data(DataConfig())
