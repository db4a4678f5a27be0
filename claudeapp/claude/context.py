"""Who is calling and why: every call through the door carries one."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CallContext"]


@dataclass(frozen=True, slots=True)
class CallContext:
    """`feature` picks the route, limits and budgets; `user_id` the user's limits and budget;
    `subject` is a generic link `("app_label.model", pk)` written to the ledger, so the ledger
    needs no foreign key into later apps."""

    feature: str
    user_id: int | None = None
    subject: tuple[str, object] | None = None

    @property
    def subject_type(self) -> str:
        return self.subject[0] if self.subject else ""

    @property
    def subject_id(self) -> str:
        return str(self.subject[1]) if self.subject else ""
