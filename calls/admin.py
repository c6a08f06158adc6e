"""Admin: read-only call history, the inbound policy and the allowlist.

Calls record external events, so the history is never edited here; actions go through services
(docs/design.md, "5. Data model").
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import Field, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from calls.call_metadata import INBOUND_POLICY, REJECTION_REASON, SCREEN
from calls.exceptions import CallError
from calls.models import (
    AllowedNumber,
    ApiToken,
    Call,
    InboundPolicy,
)
from calls.phone import mask_number, mask_numbers_in
from calls.services.actions import call_end
from calls.services.inbound import allowlist_sync_config, effective_policy
from calls.services.retention import retention_summary
from calls.services.tokens import token_revoke


def _pretty_json(value: Any, *, masked: bool = False) -> SafeString:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html("<pre>{}</pre>", mask_numbers_in(text) if masked else text)


NUMBERS_PERMISSION = "calls.view_numbers"


def _masked_field(field: Any) -> Any:
    return _MASKED_FIELDS.get(field, field) if isinstance(field, str) else field


def numbers_visible(request: HttpRequest) -> bool:
    """Whether this user may see full phone numbers; everyone else sees them masked on
    every admin page (docs/security.md, "Admin")."""
    return request.user.has_perm(NUMBERS_PERMISSION)


# The call page's fields that hold numbers, and what a user without the permission sees.
_MASKED_FIELDS = {
    "from_number": "masked_from",
    "to_number": "masked_to",
    "metadata_json": "metadata_masked",
}


# "View site" opens the live view: voicecall has no public site of its own.
admin.site.site_url = "/admin/calls/live/"


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    # Narrow enough for a 1366 px screen: the id shortened (the full one in its tooltip and
    # on the call page), and the outcome in one column.
    list_display = (
        "short_id",
        "direction",
        "provider",
        "mode",
        "masked_from",
        "masked_to",
        "ended_how",
        "started_at",
        "duration_display",
    )
    list_filter = ("state", "direction", "provider", "mode", "answered_by", "started_at")
    date_hierarchy = "started_at"
    # public_id is matched exactly in get_search_results (a UUID column has no useful icontains).
    search_fields = ("from_number", "to_number", "provider_call_id")
    search_help_text = "Number, provider call id, or a full callId"
    # The conversation, event timeline and turns are drawn by the page's template
    # (templates/admin/calls/call/change_form.html, calls/templatetags/call_pages.py).
    actions = ("end_calls",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "public_id",
                    "provider",
                    "provider_call_id",
                    "direction",
                    "mode",
                    "state",
                    "end_reason",
                    "outcome",
                    "from_number",
                    "to_number",
                    "session_key",
                )
            },
        ),
        ("Timing", {"fields": ("started_at", "answered_at", "ended_at", "duration_display")}),
        ("Answering-machine detection", {"fields": ("answered_by", "machine_detection_ms")}),
        ("Metadata", {"fields": ("metadata_json",)}),
        (
            "Internals",
            {
                "classes": ("collapse",),
                "fields": (
                    "webhook_url",
                    "turn_token",
                    "turn_started_at",
                    "max_duration_at",
                    "ring_deadline_at",
                    "notify_hangup_at",
                    "transcript_deadline_at",
                    "hangup_claimed_at",
                    "updated_at",
                ),
            },
        ),
    )
    readonly_fields = (*flatten_fieldsets(fieldsets), *_MASKED_FIELDS.values())

    def get_fieldsets(self, request: HttpRequest, obj: Call | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if numbers_visible(request):
            return fieldsets
        return [
            (name, {**options, "fields": [_masked_field(f) for f in options["fields"]]})
            for name, options in fieldsets
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # What `retention` keeps and hides, so nobody reads the history wondering.
        subtitle = retention_summary()
        return super().changelist_view(request, {**(extra_context or {}), "subtitle": subtitle})

    def has_end_permission(self, request: HttpRequest) -> bool:
        # Ending a live call is an operation, not an edit: it needs the model's change
        # permission, so view-only staff can browse the history but not hang up.
        return request.user.has_perm("calls.change_call")

    @admin.display(description="from", ordering="from_number")
    def masked_from(self, call: Call) -> str:
        return mask_number(call.from_number)

    @admin.display(description="to", ordering="to_number")
    def masked_to(self, call: Call) -> str:
        return mask_number(call.to_number)

    @admin.display(description="call", ordering="public_id")
    def short_id(self, call: Call) -> SafeString:
        full = str(call.public_id)
        return format_html('<span title="{}">{}…</span>', full, full[:8])

    @admin.display(description="state", ordering="state")
    def ended_how(self, call: Call) -> str:
        if call.meta.get(REJECTION_REASON) == INBOUND_POLICY:
            return "rejected"
        return call.state

    @admin.display(description="outcome")
    def outcome(self, call: Call) -> str:
        """How the call went, in words: a refused inbound call says so and why, where its
        state alone says only that we hung up."""
        if call.meta.get(REJECTION_REASON) == INBOUND_POLICY:
            return f"rejected by the inbound policy: {call.meta.get(SCREEN) or 'no reason kept'}"
        return call.end_reason or call.state

    @admin.display(description="duration")
    def duration_display(self, call: Call) -> str:
        duration = call.duration
        return str(timedelta(seconds=int(duration.total_seconds()))) if duration else "-"

    @admin.display(description="metadata")
    def metadata_json(self, call: Call) -> SafeString:
        return _pretty_json(call.metadata)

    @admin.display(description="metadata")
    def metadata_masked(self, call: Call) -> SafeString:
        return _pretty_json(call.metadata, masked=True)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Call], search_term: str
    ) -> tuple[QuerySet[Call], bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            public_id = uuid.UUID(search_term.strip())
        except ValueError:
            return results, may_have_duplicates
        return results | queryset.filter(public_id=public_id), may_have_duplicates

    @admin.action(description="End selected calls", permissions=("end",))
    def end_calls(self, request: HttpRequest, queryset: QuerySet[Call]) -> None:
        _for_each(
            self,
            request,
            queryset,
            lambda call: call_end(call_id=call.call_id),
            done="Ended {} call(s).",
        )


@admin.register(InboundPolicy)
class InboundPolicyAdmin(admin.ModelAdmin):
    list_display = ("__str__", "policy_display", "greeting", "updated_at")
    fields = ("policy", "greeting")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A single row: the services read `InboundPolicy.objects.first()`.
        return super().has_add_permission(request) and not InboundPolicy.objects.exists()

    @admin.display(description="policy")
    def policy_display(self, row: InboundPolicy) -> str:
        return row.policy or "use config"

    def formfield_for_choice_field(
        self, db_field: Field[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.TypedChoiceField | None:
        if db_field.name == "policy":
            # Django calls this only for fields with choices, so `or ()` never applies.
            kwargs["choices"] = [("", "use config"), *(db_field.choices or ())]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        policy, greeting = effective_policy()
        subtitle = f"Effective policy: {policy} — greeting: {greeting or '(default)'}"
        return super().changelist_view(request, {**(extra_context or {}), "subtitle": subtitle})


class AllowedNumberForm(forms.ModelForm):
    class Meta:
        model = AllowedNumber
        fields = ("number", "label", "note", "enabled")

    def full_clean(self) -> None:
        super().full_clean()
        # AllowedNumber.clean() re-runs the number's E.164 validator, so a bad number
        # would be reported twice: once on the field and once for the whole form.
        general = self.errors.get(NON_FIELD_ERRORS)
        if general and "number" in self.errors:
            repeated = set(self.errors["number"])
            # ErrorList iterates as message strings (its stub also admits the ValidationErrors
            # it stores); str() of a str is a no-op that says so to the type checker.
            kept = [str(message) for message in general if message not in repeated]
            if kept:
                self.errors[NON_FIELD_ERRORS] = self.error_class(kept, error_class="nonfield")
            else:
                del self.errors[NON_FIELD_ERRORS]

    def validate_unique(self) -> None:
        super().validate_unique()
        # `source` is not on the form, so Django skips the (number, source) constraint;
        # check it here rather than letting the insert fail with an IntegrityError.
        if "number" not in self.errors:
            try:
                self.instance.validate_constraints()
            except ValidationError as exc:
                self.add_error("number", exc.messages)


@admin.register(AllowedNumber)
class AllowedNumberAdmin(admin.ModelAdmin):
    """The allowlist. Managing it takes the view-numbers permission besides the model's
    own: a list of numbers cannot be kept by someone who may not see them. Without it the
    list is read-only and masked (docs/security.md, "Admin")."""

    form = AllowedNumberForm
    list_filter = ("source", "enabled")
    search_fields = ("number", "label")
    readonly_fields = ("source", "created_at", "masked_number")

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        number = "number" if numbers_visible(request) else "masked_number"
        return (number, "label", "enabled", "source")

    def get_fields(self, request: HttpRequest, obj: AllowedNumber | None = None) -> tuple[str, ...]:
        number = "number" if numbers_visible(request) else "masked_number"
        fields = (number, "label", "note", "enabled")
        return fields if obj is None else (*fields, "source", "created_at")

    @admin.display(description="number", ordering="number")
    def masked_number(self, row: AllowedNumber) -> str:
        return mask_number(row.number)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return numbers_visible(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: AllowedNumber | None = None) -> bool:
        return (
            not _from_config(obj)
            and numbers_visible(request)
            and super().has_change_permission(request, obj)
        )

    def has_delete_permission(self, request: HttpRequest, obj: AllowedNumber | None = None) -> bool:
        return (
            not _from_config(obj)
            and numbers_visible(request)
            and super().has_delete_permission(request, obj)
        )

    def save_model(
        self, request: HttpRequest, obj: AllowedNumber, form: forms.Form, change: bool
    ) -> None:
        if not change:
            obj.source = AllowedNumber.Source.ADMIN
        super().save_model(request, obj, form, change)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        allowlist_sync_config()  # so config allowFrom shows up as read-only rows
        return super().changelist_view(request, extra_context)


def _from_config(obj: AllowedNumber | None) -> bool:
    return obj is not None and obj.source == AllowedNumber.Source.CONFIG


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    fields = readonly_fields = list_display
    actions = ("revoke_tokens",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are minted by `manage.py voicecall token`, shown once

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("calls.change_apitoken")

    @admin.action(description="Revoke selected tokens", permissions=("revoke",))
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        _for_each(
            self,
            request,
            queryset,
            lambda token: token_revoke(token_id=token.pk),
            done="Revoked {} token(s).",
        )


def _for_each(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    rows: Iterable[Any],
    action: Callable[[Any], object],
    *,
    done: str,
) -> None:
    """Run one service per selected row: each refusal is an error message, the rest counted."""
    succeeded = 0
    for row in rows:
        try:
            action(row)
        except CallError as exc:
            model_admin.message_user(request, f"{row}: {exc.message}", messages.ERROR)
        else:
            succeeded += 1
    if succeeded:
        model_admin.message_user(request, done.format(succeeded), messages.SUCCESS)
