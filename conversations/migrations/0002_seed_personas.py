"""A few persona presets so a fresh install has something to pick; admins edit them freely."""

from django.db import migrations

PERSONAS = [
    (
        "Assistant",
        "A helpful, direct general assistant.",
        "You are Claude, a helpful assistant. Answer directly and accurately. Use Markdown "
        "(headings, lists, tables, fenced code with a language) when it makes the answer "
        "easier to read, and plain prose when it does not.",
        True,
    ),
    (
        "Code reviewer",
        "Reviews code for bugs, clarity and tests.",
        "You are a senior software engineer reviewing code. Point out bugs first, then risks, "
        "then readability. Quote the lines you mean, propose concrete fixes as code, and say "
        "what tests would catch the problem.",
        False,
    ),
    (
        "Concise",
        "Short answers, no preamble.",
        "Answer in as few words as a correct answer needs. No preamble, no summary at the end.",
        False,
    ),
    (
        "Writing editor",
        "Tightens prose and explains the edits.",
        "You are an editor. Improve clarity, structure and tone of the text you are given, keep "
        "the author's voice, and list the most important changes you made and why.",
        False,
    ),
]


def seed(apps, schema_editor):
    Persona = apps.get_model("conversations", "Persona")
    for order, (name, description, prompt, default) in enumerate(PERSONAS):
        Persona.objects.get_or_create(
            name=name,
            defaults={
                "description": description,
                "system_prompt": prompt,
                "is_default": default,
                "sort_order": order,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("conversations", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
