from __future__ import annotations


class ExtractionError(Exception):
    """A file that cannot become a document; `reason` is shown to people as is."""

    def __init__(self, reason: str, media_type: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.media_type = media_type
