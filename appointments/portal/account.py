"""Staff account pages: the two-factor step (verify a TOTP code, or set up a device) and the
password reset by email (Django's views, the portal's templates). The rule of who owes the
two-factor step is `security.two_factor_step`."""

from __future__ import annotations

import base64
import io
import logging
import smtplib

import qrcode
import qrcode.image.svg
from django import forms
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordResetForm
from django.core.mail import EmailMultiAlternatives
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from .security import two_factor_required, two_factor_step

logger = logging.getLogger("appointments.portal.account")


class TokenForm(forms.Form):
    token = forms.RegexField(
        regex=r"^\s*\d{6,8}\s*$",
        label="Code from your authenticator app",
        error_messages={"invalid": "Enter the 6-digit code your authenticator app shows."},
    )


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("portal:home")


def _qr_svg(device: TOTPDevice) -> str:
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage)
    out = io.BytesIO()
    image.save(out)
    svg = out.getvalue().decode()
    return svg[svg.index("<svg") :]  # inline, without the XML declaration


@login_required
@require_http_methods(["GET", "POST"])
def two_factor(request: HttpRequest) -> HttpResponse:
    """Verify a code from the user's device; or, with none yet, set one up (a QR code for the
    authenticator app, confirmed by its first code); or, once verified, the device's status."""
    user = request.user
    step = two_factor_step(user)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    next_url = _next_url(request)
    # Staff who may choose start the set-up from the status page (?setup).
    choosing = device is None and ("setup" in request.GET or "token" in request.POST)
    if step is None and request.POST.get("action") == "disable":
        if device is not None and not two_factor_required(user):
            TOTPDevice.objects.filter(user=user).delete()
        return HttpResponseRedirect(reverse("portal:two_factor"))
    if step is None and not choosing:
        return render(
            request,
            "registration/two_factor_status.html",
            {
                "device": device,
                "required": two_factor_required(user),
                "verified": user.is_verified(),
            },
        )
    if device is None:  # set up (required, or chosen)
        device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
        if device is None:
            device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    form = TokenForm(request.POST if "token" in request.POST else None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"].strip()):
            if not device.confirmed:
                device.confirmed = True
                device.save(update_fields=["confirmed"])
                TOTPDevice.objects.filter(user=user, confirmed=False).delete()
            otp_login(request, device)
            request.session.cycle_key()  # a new session id for the more trusted session
            return HttpResponseRedirect(next_url)
        form.add_error("token", "That code is not right, or it has expired. Try the next one.")
    context = {"form": form, "next": next_url, "setup": not device.confirmed}
    if not device.confirmed:
        context["qr_svg"] = mark_safe(_qr_svg(device))  # noqa: S308 - our own generated SVG
        context["secret"] = base64.b32encode(device.bin_key).decode()
    return render(request, "registration/two_factor.html", context)


class StaffPasswordResetForm(PasswordResetForm):
    """Django's form; only a mail failure is handled differently. The page says "sent" all the
    same (it says so for unknown addresses too, and the person can ask again), and the failure
    is logged as a warning with the user's id and the error's type only: Django's own handler
    logs the traceback, and SMTP errors quote the addresses (a refused recipient's is in the
    exception)."""

    def send_mail(
        self,
        subject_template_name,
        email_template_name,
        context,
        from_email,
        to_email,
        html_email_template_name=None,
    ):
        subject = "".join(render_to_string(subject_template_name, context).splitlines())
        message = EmailMultiAlternatives(
            subject, render_to_string(email_template_name, context), from_email, [to_email]
        )
        if html_email_template_name is not None:
            message.attach_alternative(
                render_to_string(html_email_template_name, context), "text/html"
            )
        try:
            message.send()
        except (smtplib.SMTPException, OSError) as exc:  # OSError: refused, unreachable, timeout
            logger.warning(
                "password reset email failed for user %s: %s",
                context["user"].pk,
                type(exc).__name__,
            )


# Password reset by email: Django's views and tokens, the portal's templates and URL names.
password_reset = auth_views.PasswordResetView.as_view(
    form_class=StaffPasswordResetForm,
    template_name="registration/password_reset_form.html",
    email_template_name="registration/password_reset_email.txt",
    subject_template_name="registration/password_reset_subject.txt",
    success_url=reverse_lazy("portal:password_reset_done"),
    from_email=None,
    extra_email_context={"site_name": settings.OTP_TOTP_ISSUER},
)
password_reset_done = auth_views.PasswordResetDoneView.as_view(
    template_name="registration/password_reset_done.html"
)
password_reset_confirm = auth_views.PasswordResetConfirmView.as_view(
    template_name="registration/password_reset_confirm.html",
    success_url=reverse_lazy("portal:password_reset_complete"),
)
password_reset_complete = auth_views.PasswordResetCompleteView.as_view(
    template_name="registration/password_reset_complete.html"
)
