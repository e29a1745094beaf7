import pytest

from calls.capabilities import SERVER


@pytest.fixture
def server_actor():
    return SERVER
