"""What analysts submit about a case: a verdict with a reason, a note and labels for single alerts, a note on its own,
a lead's reason to reopen, and a card or merchant to put on a list."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone

from scoring.cases import NOTE_MAX_LENGTH
from scoring.lists import ANALYST_MAX_DAYS, DEFAULT_DAYS, REASON_MAX_LENGTH, VALUE_MAX_LENGTH
from scoring.models import ListEntity, ListKind, ReasonCode

VERDICTS = [("fraud", "Fraud"), ("legitimate", "Legitimate")]
LABEL_FIELD = re.compile(r"label-(\d+)")  # the case page's per-transaction labels: label-<transaction id>
EXPIRY_DAYS = [1, 7, DEFAULT_DAYS, ANALYST_MAX_DAYS]


class ResolveForm(forms.Form):
    """The verdict, an optional reason code (the active ones; whether it goes with the verdict is scoring/cases.py's
    rule) and note, and `label-<id>` fields for alerts the analyst labels otherwise than the verdict."""

    verdict = forms.ChoiceField(
        choices=VERDICTS,
        error_messages={"required": "choose fraud or legitimate", "invalid_choice": "choose fraud or legitimate"},
    )
    reason = forms.ModelChoiceField(
        queryset=ReasonCode.objects.filter(is_active=True),
        to_field_name="code",
        required=False,
        error_messages={"invalid_choice": "choose a reason from the list (it may have been retired: reload the page)"},
    )
    note = forms.CharField(required=False, max_length=NOTE_MAX_LENGTH, strip=True)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        verdict, labels = data.get("verdict"), {}
        for name, value in self.data.items():
            found = LABEL_FIELD.fullmatch(name)
            if not found or value in ("", verdict):  # "" and the verdict itself: labeled as the verdict
                continue
            if value not in dict(VERDICTS):
                raise forms.ValidationError("label each transaction fraud or legitimate, or as the verdict")
            labels[int(found[1])] = value == "fraud"
        data["labels_by_id"] = labels
        return data


class NoteForm(forms.Form):
    text = forms.CharField(
        max_length=NOTE_MAX_LENGTH, strip=True, error_messages={"required": "write the note before adding it"}
    )


class ReopenForm(forms.Form):
    reason = forms.CharField(
        max_length=NOTE_MAX_LENGTH, strip=True, error_messages={"required": "say why the case is reopened"}
    )


class ListEntryForm(forms.Form):
    """Block this card or merchant: for how many days (none: open-ended, which scoring/lists.py allows leads
    only, as it does allow entries), and the case page it comes from, if any."""

    entity = forms.ChoiceField(choices=ListEntity.choices)
    value = forms.CharField(max_length=VALUE_MAX_LENGTH, strip=True)
    kind = forms.ChoiceField(choices=ListKind.choices, initial=ListKind.BLOCK, required=False)
    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH, strip=True, error_messages={"required": "say why it goes on the list"}
    )
    expires_in_days = forms.TypedChoiceField(
        choices=[*[(str(days), f"{days} days") for days in EXPIRY_DAYS], ("", "No expiry")],
        coerce=int,
        empty_value=None,
        required=False,
        initial=str(DEFAULT_DAYS),
    )
    case = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)  # within the id column

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data["kind"] = data.get("kind") or ListKind.BLOCK
        days = data.get("expires_in_days")
        data["expires_at"] = timezone.now() + timedelta(days=days) if days else None
        return data
