"""Staff sign-in rules: the demo passwords with DEBUG off, and two-factor authentication.

- `StaffBackend` is Django's model backend that refuses the demo data's passwords whenever
  DEBUG is off (the portal's and the Django admin's sign-in alike).
- `two_factor_step(user)` is the one rule for TOTP: clinic admins and superusers must verify a
  TOTP device after their password (or set one up on their first sign-in); other staff who
  set one up must verify it too. With DEBUG on, the demo superuser is exempt.
- `TwoFactorMiddleware` applies it to every page (portal and Django admin): a signed-in user
  who owes the step is sent to it, wherever they were going.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from appointments import demo
from appointments.models import ClinicMembership

Step = Literal["verify", "setup"] | None

# Paths a user who owes the two-factor step may still open.
OPEN_PATHS = ("/account/", "/login/", "/logout/", "/static/")


class StaffBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if password in demo.PASSWORDS and not demo.demo_credentials_allowed():
            return None  # a failed sign-in like any other (and counted by axes)
        return super().authenticate(request, username=username, password=password, **kwargs)


def two_factor_step(user: Any) -> Step:
    """What a signed-in user still owes: "verify" a TOTP code, "setup" a device first, or
    nothing. One query: their confirmed devices and admin memberships together."""
    if getattr(user, "is_verified", None) is not None and user.is_verified():
        return None
    demo_admin = user.is_superuser and user.get_username() == demo.ADMIN_USERNAME
    if demo_admin and demo.demo_credentials_allowed():
        return None  # the demo superuser, development only (bin/run says so)
    row = (
        get_user_model()
        .objects.filter(pk=user.pk)
        .annotate(
            has_device=Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)),
            clinic_admin=Exists(
                ClinicMembership.objects.filter(
                    staff__user=OuterRef("pk"), role=ClinicMembership.Role.ADMIN
                )
            ),
        )
        .values_list("has_device", "clinic_admin")
        .first()
    )
    if row is None:
        return None
    has_device, clinic_admin = row
    if has_device:
        return "verify"
    if clinic_admin or user.is_superuser:
        return "setup"
    return None


def two_factor_required(user: Any) -> bool:
    """Clinic admins and superusers may not switch two-factor authentication off."""
    if user.is_superuser:
        return True
    return ClinicMembership.objects.filter(
        staff__user=user, role=ClinicMembership.Role.ADMIN
    ).exists()


class TwoFactorMiddleware:
    """After django_otp's OTPMiddleware: pages wait until the user has passed the step."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.session.get("_auth_user_id") is not None
            and not request.path.startswith(OPEN_PATHS)
            and request.user.is_authenticated
            and two_factor_step(request.user) is not None
        ):
            target = reverse("portal:two_factor")
            return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)
