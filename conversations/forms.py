"""Conversation settings: what a model accepts comes from the registry, never from the form."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator

from conversations.models import Conversation, Persona
from documents.models import DocumentSet

SET_REFUSED = "You cannot use that document set: choose one you can read."


def document_set_field() -> forms.ModelChoiceField:
    """Binding a conversation to a set: the caller narrows the queryset to the sets the user
    may read, so the options and the server-side check are one rule."""
    return forms.ModelChoiceField(
        queryset=DocumentSet.objects.none(),
        required=False,
        empty_label="None",
        label="Document set",
        error_messages={"invalid_choice": SET_REFUSED},
    )


def readable_sets(user):  # noqa: ANN001, ANN201 - a User; a QuerySet of DocumentSet
    from documents.selectors import documentset_visible_to

    return documentset_visible_to(user).order_by("name")


def model_choices() -> list[tuple[str, str]]:
    """Models a conversation may use: the registry's, retired ones left out."""
    from claudeapp.claude.config import get_config

    specs = [s for s in get_config().specs.values() if not s.retired]
    specs.sort(key=lambda s: (s.legacy, s.lifecycle != "active", s.line, s.model_id))
    choices = []
    for spec in specs:
        label = spec.display_name or spec.model_id
        if spec.lifecycle == "deprecated":
            label += " (deprecated)"
        elif spec.legacy:
            label += " (legacy)"
        choices.append((spec.model_id, label))
    return choices


def model_spec(model_id: str):  # noqa: ANN201 - claudeapp.claude.config.Spec
    from claudeapp.claude.config import get_config
    from claudeapp.claude.registry import resolve

    return resolve(get_config(), model_id)


class ConversationSettingsForm(forms.ModelForm):
    persona = forms.ModelChoiceField(
        queryset=Persona.objects.none(), required=False, empty_label="No persona"
    )
    model_id = forms.ChoiceField(label="Model")
    max_tokens = forms.IntegerField(label="Longest reply (tokens)", min_value=1)
    thinking_budget = forms.IntegerField(label="Thinking budget (tokens)", min_value=1024)
    temperature = forms.DecimalField(
        required=False, min_value=Decimal(0), max_value=Decimal(1), decimal_places=2
    )
    document_set = document_set_field()

    class Meta:
        model = Conversation
        fields = [
            "persona", "system_prompt", "model_id", "max_tokens", "thinking",
            "thinking_budget", "effort", "temperature", "document_set",
        ]  # fmt: skip
        widgets = {
            "system_prompt": forms.Textarea(
                attrs={"rows": 4, "placeholder": "Leave empty to use the persona's prompt."}
            )
        }
        labels = {"system_prompt": "Custom system prompt"}

    def __init__(self, *args, user, model_id: str | None = None, **kwargs) -> None:  # noqa: ANN001
        super().__init__(*args, **kwargs)
        self.fields["persona"].queryset = Persona.objects.filter(is_active=True)
        readable = readable_sets(user)
        self.fields["document_set"].queryset = readable
        # A set the owner can no longer read stays bound until they choose; the form says so.
        bound = self.instance.document_set_id
        self.unreadable_set = (
            self.instance.document_set if bound and not readable.filter(pk=bound).exists() else None
        )
        self.offers_sets = bool(bound) or readable.exists()
        self.fields["model_id"].choices = model_choices()
        chosen = model_id or self.data.get("model_id") or self.instance.model_id
        self.spec = model_spec(chosen)
        self.fields["max_tokens"].validators.append(MaxValueValidator(self.spec.max_output_tokens))
        self.fields["max_tokens"].widget.attrs.update(max=self.spec.max_output_tokens)
        self.fields["system_prompt"].max_length = settings.CHAT_MAX_SYSTEM_PROMPT_CHARS

    # What the chosen model accepts (the template shows only these).
    @property
    def thinking_choice(self) -> bool:
        modes = self.spec.thinking_modes
        return "disabled" in modes and ("adaptive" in modes or "enabled" in modes)

    @property
    def thinking_always_on(self) -> bool:
        return self.spec.thinking_always_on

    @property
    def budget_thinking(self) -> bool:
        return "enabled" in self.spec.thinking_modes and "adaptive" not in self.spec.thinking_modes

    @property
    def effort_allowed(self) -> bool:
        return self.spec.effort

    @property
    def temperature_allowed(self) -> bool:
        return bool(self.spec.sampling_api_version)

    def clean(self) -> dict:
        data = super().clean()
        if not self.effort_allowed:
            data["effort"] = ""
        if not self.temperature_allowed:
            data["temperature"] = None
        if not self.thinking_choice:
            data["thinking"] = (
                Conversation.Thinking.ON if self.thinking_always_on else Conversation.Thinking.OFF
            )
        return data


class NewConversationForm(forms.Form):
    """Starting a chat, optionally bound to a set the user may read."""

    document_set = document_set_field()

    def __init__(self, *args, user, **kwargs) -> None:  # noqa: ANN001
        super().__init__(*args, **kwargs)
        self.fields["document_set"].queryset = readable_sets(user)
        self.offers_sets = self.fields["document_set"].queryset.exists()


class RenameForm(forms.Form):
    title = forms.CharField(max_length=120, required=False)
