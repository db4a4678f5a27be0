"""Browser uploads that cannot fill the disk: a file past DOCUMENTS_MAX_FILE_SIZE is counted,
not kept, and arrives as an `OversizeUpload` stub; the other files of the request still land."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler


class OversizeUpload(UploadedFile):
    oversize = True

    def __init__(self, name: str, size: int, content_type: str | None) -> None:
        super().__init__(file=None, name=name, content_type=content_type, size=size)


class CappedUploadHandler(FileUploadHandler):
    """First handler of the chain: passes each file's bytes on to Django's own handlers until
    the limit, then swallows the rest while still counting them."""

    def new_file(self, *args: object, **kwargs: object) -> None:
        super().new_file(*args, **kwargs)
        self.limit = settings.DOCUMENTS_MAX_FILE_SIZE
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        return raw_data if self.received <= self.limit else None

    def file_complete(self, file_size: int) -> UploadedFile | None:
        if self.received > self.limit:
            return OversizeUpload(self.file_name, self.received, self.content_type)
        return None
