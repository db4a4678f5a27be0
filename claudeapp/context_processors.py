from __future__ import annotations

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

# (label, url name, who sees it): apps register their pages here once their urls exist.
NAV = [
    ("Chat", "conversations:list", "user"),
    ("Document sets", "documents:set-list", "user"),
    ("Jobs", "documents:job-list", "staff"),
]


def nav(request: HttpRequest) -> dict[str, list[dict[str, object]]]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": []}
    items = []
    for label, name, audience in NAV:
        if audience == "staff" and not user.is_staff:
            continue
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        items.append({"label": label, "url": url, "active": request.path.startswith(url)})
    return {"nav_items": items}
