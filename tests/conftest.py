import pytest

from calls.capabilities import SERVER
from config import celery_app


@pytest.fixture
def server_actor():
    return SERVER


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in-process for tests that are not about delivery."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _builtin_call_types(request):
    """Built-in call types come from a data migration, which a transactional test's flush
    removes; put them back for every test that uses the database."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    transactional = marker.kwargs.get("transaction", False)
    request.getfixturevalue("transactional_db" if transactional else "db")
    from calls.services.call_types import call_types_ensure_builtin

    call_types_ensure_builtin()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
