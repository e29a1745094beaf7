"""FHIR test fixtures: `ehr`, clinic-a's registered client (tests.fhir.ehr), and `fhir`, a
test client holding its access token."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from .ehr import Fhir, register, token_for


@pytest.fixture
def ehr(clinic):
    return register(clinic)


@pytest.fixture
def fhir(ehr):
    return Fhir(Client(), token_for(ehr))


@pytest.fixture(autouse=True)
def _clean_cache():
    """The token endpoint's rate limits and the fetched JWK sets live in the cache, which
    outlives a test."""
    cache.clear()
    yield
    cache.clear()
