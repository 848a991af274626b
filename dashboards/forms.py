"""What analysts submit about a case: a verdict with an optional note, a note on its own, a lead's reason to reopen."""

from __future__ import annotations

from django import forms

from scoring.cases import NOTE_MAX_LENGTH


class ResolveForm(forms.Form):
    verdict = forms.ChoiceField(
        choices=[("fraud", "Fraud"), ("legitimate", "Legitimate")],
        error_messages={"required": "choose fraud or legitimate", "invalid_choice": "choose fraud or legitimate"},
    )
    note = forms.CharField(required=False, max_length=NOTE_MAX_LENGTH, strip=True)


class NoteForm(forms.Form):
    text = forms.CharField(
        max_length=NOTE_MAX_LENGTH, strip=True, error_messages={"required": "write the note before adding it"}
    )


class ReopenForm(forms.Form):
    reason = forms.CharField(
        max_length=NOTE_MAX_LENGTH, strip=True, error_messages={"required": "say why the case is reopened"}
    )
