"""Bulk classification of a document set through the Message Batches API (or live calls).

Models live in `models.py` (imported by `documents.models`, so their app is `documents`);
writes in `services.py`, reads in `selectors.py`, Celery entry points in `tasks.py`.
"""
