import pytest

from resnas.data import DataConfig, load_data

# A 2-stage space of tiny nets (12 architectures) for real searches that take seconds.
TINY_SPACE = """
description = "tiny test space"
[fixed]
widths = [4, 8]
stem_width = 4
[choices]
blocks = [1, 2]
k = [1, 2, 3]
kernels = [[3], [3, 3]]
"""


@pytest.fixture(scope="session")
def digits():
    return load_data(DataConfig())


@pytest.fixture(scope="session")
def tiny_space_text():
    return TINY_SPACE
