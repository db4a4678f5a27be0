"""RAG over document sets (issue 9): questions answered from a set's documents, with exact
citations, cached document prompts and answers streamed from Celery workers.

A Django app of its own (label ``rag``) inside the documents package, so its migrations never
interleave with the documents app's.
"""
