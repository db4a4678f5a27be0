from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from documents.models import DocumentSet


class DocumentSetForm(forms.ModelForm):
    members = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="People who may read this set's documents and ask questions about them.",
    )
    member_groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.order_by("name"),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}),
        label="Member groups",
        help_text="Everyone in these groups is a member too.",
    )

    class Meta:
        model = DocumentSet
        fields = ["name", "description", "members", "member_groups"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}


class UploadOptionsForm(forms.Form):
    csv_rows = forms.BooleanField(
        required=False, label="CSV files: one document per row", initial=False
    )
