"""FHIR test fixtures: `ehr`, clinic-a's registered client (tests.fhir.ehr), and `fhir`, a
test client holding its access token."""

from __future__ import annotations

import pytest
from django.test import Client

from .ehr import Fhir, register, token_for


@pytest.fixture
def ehr(clinic):
    return register(clinic)


@pytest.fixture
def fhir(ehr):
    return Fhir(Client(), token_for(ehr))
