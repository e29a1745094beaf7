"""Admin for the call engine. Every state change goes through calls.services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from calls.outbox import webhooks
from calls.services.live import call_end, call_go_live, call_stop_live

from .capabilities import SERVER
from .errors import CallsError
from .models import (
    Call,
    CallEvent,
    CallMember,
    CallType,
    CallUser,
    DueAction,
    PushDelivery,
    WebhookDelivery,
    WebhookEndpoint,
)


@admin.register(CallUser)
class CallUserAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["id", "name"]


@admin.register(CallType)
class CallTypeAdmin(admin.ModelAdmin):
    list_display = ["name", "updated_at"]
    search_fields = ["name"]


class CallMemberInline(admin.TabularInline):
    model = CallMember
    extra = 0
    fields = ["user", "role", "custom", "created_at", "updated_at"]
    readonly_fields = fields


class CallEventInline(admin.TabularInline):
    model = CallEvent
    extra = 0
    can_delete = False
    fields = ["id", "type", "created_at"]
    readonly_fields = fields
    ordering = ["id"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class EndedFilter(admin.SimpleListFilter):
    title = "ended"
    parameter_name = "ended"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("yes", "Ended"), ("no", "Not ended")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(ended_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(ended_at__isnull=True)
        return queryset


def _run(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, service, verb):
    done = 0
    for call in queryset:
        try:
            service(actor=SERVER, type_name=call.type_id, call_id=call.call_id)
            done += 1
        except CallsError as exc:
            modeladmin.message_user(request, f"{call.cid}: {exc.message}", messages.ERROR)
    if done:
        modeladmin.message_user(request, f"{verb} {done} call(s).", messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what the system did: looked at, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    # Calls change only through services: the API, the appointments layer and these actions.
    list_display = ["cid", "team", "starts_at", "backstage", "ended_at", "created_at"]
    list_filter = ["type", "team", "backstage", EndedFilter, "starts_at"]
    search_fields = ["call_id", "cid"]
    date_hierarchy = "starts_at"
    list_select_related = ["type"]
    inlines = [CallMemberInline, CallEventInline]
    readonly_fields = [
        "cid",
        "created_at",
        "updated_at",
        "live_started_at",
        "live_ended_at",
        "ended_at",
        "deleted_at",
        "current_session_id",
    ]
    autocomplete_fields = ["created_by"]
    actions = ["go_live", "stop_live", "end_call"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(deleted_at__isnull=True)

    @admin.action(description="Go live (leave backstage)")
    def go_live(self, request: HttpRequest, queryset: QuerySet) -> None:
        _run(self, request, queryset, call_go_live, "Went live with")

    @admin.action(description="Stop live (back to backstage)")
    def stop_live(self, request: HttpRequest, queryset: QuerySet) -> None:
        _run(self, request, queryset, call_stop_live, "Stopped live for")

    @admin.action(description="End call for everyone")
    def end_call(self, request: HttpRequest, queryset: QuerySet) -> None:
        _run(self, request, queryset, call_end, "Ended")


@admin.register(CallEvent)
class CallEventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "call_cid", "created_at"]
    list_filter = ["type"]
    search_fields = ["call_cid"]
    readonly_fields = ["call", "call_cid", "type", "payload", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(PushDelivery)
class PushDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "purpose", "state", "device", "attempts", "last_status", "sent_at"]
    list_filter = ["state", "purpose", "device__kind"]
    list_select_related = ["device"]
    search_fields = ["event__call_cid"]


@admin.register(DueAction)
class DueActionAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "key", "call", "due_at", "state", "attempts", "done_at"]
    list_filter = ["state", "kind"]
    list_select_related = ["call"]
    search_fields = ["call__cid"]
    date_hierarchy = "due_at"


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "url",
        "team",
        "kind",
        "event_types",
        "active",
        "from_app_settings",
        "created_at",
    ]
    list_filter = ["active", "team", "kind"]
    search_fields = ["url", "team"]
    # Endpoint URLs are https (calls.models.validate_webhook_url): so is a schemeless entry.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "webhook_id",
        "event_type",
        "endpoint",
        "state",
        "attempts",
        "last_status",
        "last_error",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["state", "endpoint"]
    list_select_related = ["endpoint", "event"]
    search_fields = ["webhook_id", "event__call_cid"]
    actions = ["resend"]

    def get_exclude(self, request: HttpRequest, obj: object = None) -> list[str]:
        # The receiver's answer may echo what it was sent: superusers only.
        return [] if request.user.is_superuser else ["last_response"]

    def has_resend_permission(self, request: HttpRequest) -> bool:
        # The log itself stays read-only; resending is for those who may change deliveries.
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description="Resend (dead or retrying, same webhook id)", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        requeued = webhooks.deliveries_requeue(ids=selected)
        self.message_user(
            request,
            f"Requeued {requeued} webhook deliver{'y' if requeued == 1 else 'ies'} for resending.",
            messages.SUCCESS if requeued else messages.WARNING,
        )
        if skipped := len(selected) - requeued:
            self.message_user(
                request,
                f"Skipped {skipped}: only dead or retrying deliveries of active endpoints are "
                "resent.",
                messages.WARNING,
            )

    @admin.display(description="event type", ordering="event__type")
    def event_type(self, obj: WebhookDelivery) -> str:
        if obj.event is None:  # an endpoint of another kind (a FHIR Subscription's)
            return f"{obj.endpoint.kind}: {(obj.payload or {}).get('type', '')}"
        return obj.event.type
