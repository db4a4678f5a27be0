from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser

from documents.classification import services
from documents.classification.models import ClassificationJob
from documents.classification.prompts import EXTRA_FIELD_LABELS
from documents.selectors import documentset_managed_by

LABELS_HELP = "One label per line, a colon, then what it means: “invoice: a bill to be paid”."


def parse_label_lines(text: str) -> list[dict[str, str]]:
    """`name: description` lines (blank lines skipped) as label dicts, validated."""
    labels = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, description = line.partition(":")
        if not colon:
            raise forms.ValidationError(
                f"Line {number}: write the label, a colon, then its description."
            )
        labels.append({"name": name.strip(), "description": description.strip()})
    return services.clean_labels(labels)


def model_choices() -> list[tuple[str, str]]:
    from claudeapp.models import ModelSpec

    default = services.default_model_id()
    choices = []
    for spec in ModelSpec.objects.exclude(lifecycle="retired").order_by("model_id"):
        name = spec.display_name or spec.model_id
        if spec.model_id == default:
            name = f"{name} (cheapest, default)"
        choices.append((spec.model_id, name))
    if default not in {value for value, _ in choices}:
        choices.insert(0, (default, f"{default} (default)"))
    return choices


class JobForm(forms.Form):
    document_set = forms.ModelChoiceField(queryset=None, label="Document set")
    search = forms.CharField(
        required=False,
        max_length=200,
        label="Only documents whose file name contains",
        widget=forms.TextInput(attrs={"placeholder": "e.g. 2025/ or .pdf (optional)"}),
    )
    labels = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 5, "placeholder": "invoice: a bill asking to be paid\nreceipt: …"}
        ),
        help_text=LABELS_HELP,
    )
    instructions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="What the labels are for and how to choose between close ones.",
    )
    model_id = forms.ChoiceField(label="Model")
    extra_fields = forms.MultipleChoiceField(
        required=False,
        label="Also ask for",
        choices=list(EXTRA_FIELD_LABELS.items()),
        widget=forms.CheckboxSelectMultiple,
    )
    mode = forms.ChoiceField(
        choices=ClassificationJob.Mode.choices,
        initial=ClassificationJob.Mode.BATCH,
        widget=forms.RadioSelect,
        help_text="Batch costs half and usually finishes within the hour; realtime is for small "
        "urgent sets.",
    )

    def __init__(self, *args: Any, user: AbstractBaseUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["document_set"].queryset = documentset_managed_by(user)
        self.fields["model_id"].choices = model_choices()
        self.fields["model_id"].initial = services.default_model_id()

    def clean_labels(self) -> list[dict[str, str]]:
        return parse_label_lines(self.cleaned_data["labels"])

    def job_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "document_set": data["document_set"],
            "labels": data["labels"],
            "instructions": data["instructions"],
            "model_id": data["model_id"],
            "extra_fields": data["extra_fields"],
            "mode": data["mode"],
            "document_filter": {"search": data["search"].strip()} if data["search"] else {},
        }
