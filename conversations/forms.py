"""Conversation settings: what a model accepts comes from the registry, never from the form."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator

from conversations.models import Conversation, Persona


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

    class Meta:
        model = Conversation
        fields = [
            "persona", "system_prompt", "model_id", "max_tokens", "thinking",
            "thinking_budget", "effort", "temperature",
        ]  # fmt: skip
        widgets = {
            "system_prompt": forms.Textarea(
                attrs={"rows": 4, "placeholder": "Leave empty to use the persona's prompt."}
            )
        }
        labels = {"system_prompt": "Custom system prompt"}

    def __init__(self, *args, model_id: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["persona"].queryset = Persona.objects.filter(is_active=True)
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


class RenameForm(forms.Form):
    title = forms.CharField(max_length=120, required=False)
