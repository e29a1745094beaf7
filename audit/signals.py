"""Staff sign-ins and failures (Django's auth signals). A failure keeps the id of the account
it tried when that account exists (its clinics' admins see attempts on their staff), never
what was typed: the username may be anything, even a patient's name."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from .record import ANONYMOUS, Action, Actor, client_ip, record


@receiver(user_logged_in, dispatch_uid="audit_staff_signed_in")
def _signed_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    record(
        action=Action.SIGNED_IN,
        actor=Actor.staff(user.pk),
        object_type="staff",
        object_id=user.pk,
        ip=client_ip(request) if request is not None else None,
    )


@receiver(user_login_failed, dispatch_uid="audit_staff_sign_in_failed")
def _sign_in_failed(sender: Any, credentials: Any, request: Any = None, **kwargs: Any) -> None:
    user_model = get_user_model()
    username = (credentials or {}).get(user_model.USERNAME_FIELD)
    tried = (
        user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username})
        .values_list("pk", flat=True)
        .first()
        if isinstance(username, str)
        else None
    )
    record(
        action=Action.SIGN_IN_FAILED,
        actor=ANONYMOUS,
        object_type="staff",
        object_id=tried if tried is not None else "",
        ip=client_ip(request) if request is not None else None,
    )
