"""`manage.py ask SET QUESTION`: ask a document set a question; prints the answer as it streams,
then its citations, then a one-line summary. Exits 1 when the answer did not complete.

The answer runs here, through the same runner a Celery worker uses (the reply protocol: a page
watching the question sees it stream too), so no worker needs to be running."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from claudeapp.claude import TextDelta
from documents.models import DocumentSet
from documents.rag import services
from documents.rag.models import RagQuery
from documents.selectors import documentset_visible_to


class Command(BaseCommand):
    help = "Ask a document set a question; print the streamed answer and its citations."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("set_name", metavar="SET", help="the document set's name")
        parser.add_argument("question", metavar="QUESTION", help="the question")
        parser.add_argument(
            "--user", help="ask as this user (must be able to see the set); default: no user"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        document_set = DocumentSet.objects.filter(name=options["set_name"]).first()
        if document_set is None:
            raise CommandError(f"no document set named {options['set_name']!r}")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None or not documentset_visible_to(user).filter(pk=document_set.pk).exists():
                raise CommandError(f"no document set named {options['set_name']!r} for that user")
        try:
            query = services.ragquery_ask(
                document_set=document_set, user=user, question=options["question"], enqueue=False
            )
        except services.RagError as error:
            raise CommandError(error.user_message) from None
        strategy = RagQuery.Strategy(query.strategy).label.lower()
        self.stderr.write(
            f"Asking {document_set.name!r} ({strategy}, {query.set_tokens:,} tokens)…"
        )

        def show(event: object) -> None:
            if isinstance(event, TextDelta):
                self.stdout.write(event.text, ending="")
                self.stdout.flush()

        answer = services.ragquery_run(query_id=query.pk, on_event=show)
        self.stdout.write("")
        if answer is None:
            raise CommandError("the question was taken by another runner")
        for passage in answer.citations:
            where = f"characters {passage['start']}–{passage['end']}"
            if passage.get("page_start"):
                where += f", page {passage['page_start']}"
            quoted = " ".join(passage["cited_text"].split())
            if len(quoted) > 160:
                quoted = quoted[:157] + "…"
            self.stdout.write(f"[{passage['n']}] {passage['title']} ({where}): “{quoted}”")
        summary = (
            f"{answer.status}: {strategy}, {len(answer.citations)} citation"
            f"{'' if len(answer.citations) == 1 else 's'}, {answer.prompt_tokens:,} input tokens "
            f"({answer.cache_read_tokens:,} from cache), {answer.output_tokens:,} output"
        )
        if answer.cost_usd is not None:
            summary += f", ${answer.cost_usd:.4f}"
        if answer.duration_ms:
            summary += f", {answer.duration_ms / 1000:.1f} s"
        if answer.status != "complete":
            raise CommandError(f"{summary}. {answer.status_message}")
        self.stdout.write(summary)
