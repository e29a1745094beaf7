"""factory-boy factories shared by the tests."""

from __future__ import annotations

import datetime as dt
import itertools
from datetime import timedelta

import factory
from django.utils import timezone

from appointments.services.booking import Booking, appointment_book
from appointments.services.patients import patient_create
from appointments.services.staff import staff_create
from calls.models import Call, CallMember, CallType, CallUser


class CallUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CallUser
        django_get_or_create = ("id",)

    id = factory.Sequence(lambda n: f"user-{n}")
    name = factory.LazyAttribute(lambda o: o.id.replace("-", " ").title())
    role = "user"

    teams = factory.LazyFunction(list)


class CallFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Call

    type = factory.LazyFunction(lambda: CallType.objects.get(name="default"))
    call_id = factory.Sequence(lambda n: f"call-{n}")
    cid = factory.LazyAttribute(lambda o: f"{o.type.name}:{o.call_id}")
    created_by = factory.SubFactory(CallUserFactory)
    team = None

    class Params:
        live = factory.Trait(backstage=False)
        in_backstage = factory.Trait(backstage=True)


class CallMemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CallMember

    call = factory.SubFactory(CallFactory)
    user = factory.SubFactory(CallUserFactory)
    role = "call_member"


# --- appointments ----------------------------------------------------------------------------


class ClinicFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "appointments.Clinic"
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"clinic-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    time_zone = "Europe/Paris"


_staff_numbers = itertools.count(1)


def make_staff(clinic, username=None, role="clinician", display_name=None, password="pw-test-1"):
    """A staff member of `clinic` (through the service, so their calls user exists)."""
    username = username or f"staff{next(_staff_numbers)}"
    return staff_create(
        username=username,
        password=password,
        display_name=display_name or username.title(),
        memberships={clinic: role},
    )


def make_patient(clinic, name="Pat Example", **kwargs):
    return patient_create(clinic=clinic, name=name, **kwargs)


def make_appointment(clinic=None, *, host=None, patient=None, starts_at=None, **kwargs):
    """A booked appointment (and its call) through the service."""
    clinic = clinic or ClinicFactory()
    host = host or make_staff(clinic)
    patient = patient or make_patient(clinic)
    starts_at = starts_at or timezone.now() + timedelta(hours=1)
    booking = Booking(clinic=clinic, patient=patient, starts_at=starts_at, host=host, **kwargs)
    return appointment_book(booking=booking, by=host)


# A fixed clock for appointment tests (`frozen` in tests/conftest.py): booked at NOW, for START
# (12:00 in Paris, the clinic's zone; 07:00 in Recife, the patient's).
NOW = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.UTC)
START = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)


# --- staff sign-in ---------------------------------------------------------------------------


def login_verified(client, user) -> None:
    """Sign `user` in on a test client as a finished sign-in would: password, then (for those
    who must: clinic admins, superusers) a verified TOTP device on the session."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from appointments.portal.security import two_factor_required

    client.force_login(user)
    if not two_factor_required(user):
        return
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="test", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
