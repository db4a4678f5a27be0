from __future__ import annotations

from django import forms
from django.conf import settings


class AskForm(forms.Form):
    question = forms.CharField(
        max_length=settings.RAG_MAX_QUESTION_CHARS,
        strip=True,
        widget=forms.Textarea(
            attrs={
                "rows": 2,
                "placeholder": "Ask a question about these documents",
                "aria-label": "Your question",
            }
        ),
        error_messages={"required": "Type a question first."},
    )
