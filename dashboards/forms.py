"""The one form analysts submit: a verdict on a case, with an optional note."""

from __future__ import annotations

from django import forms


class ResolveForm(forms.Form):
    verdict = forms.ChoiceField(
        choices=[("fraud", "Fraud"), ("legitimate", "Legitimate")],
        error_messages={"required": "choose fraud or legitimate", "invalid_choice": "choose fraud or legitimate"},
    )
    note = forms.CharField(required=False, max_length=2000, strip=True)
