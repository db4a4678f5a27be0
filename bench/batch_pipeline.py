"""Batch classification pipeline bench, measured in one run.

    .venv/bin/python bench/batch_pipeline.py                    # 100,000 documents + realtime
    .venv/bin/python bench/batch_pipeline.py --documents 20000 --realtime 200

(a) Batch mode: N small documents already `ready`, from the job's start (estimate, create,
    plan) to every result stored, with the emulator answering at once (--batch-seconds 0,
    unpaced). Wall time against the 120 s target, where the time went (plan, submit, the
    emulator ending the batch, ingestion), and the peak RSS (VmHWM) of every process: the bench
    itself, the worker and each of its pool processes, beat, the emulator; target 500 MB each.
(b) Realtime mode: M documents with live calls at concurrency 8: documents per second.

It starts what it measures: its own emulator, a Celery worker (prefork, --concurrency, default
2 for the two cores) and beat, on a PostgreSQL database of its own (claudeapp_bench_<run>,
dropped at the end) or a SQLite file, with Redis keys and a queue of its own. Everything runs
with the production defaults except: the app's request limits are off (CLAUDE_USER_RPM=0,
CLAUDE_GLOBAL_RPM=0, CLAUDE_MAX_CONCURRENT=0) and beat ticks and polls every second (the
production poll starts at 15 s: with a batch that ends at once, that would measure the poll
interval, not the pipeline).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
RUN = uuid.uuid4().hex[:8]
TARGET_SECONDS = 120
TARGET_RSS = 500 * 1024 * 1024
TOPICS = {
    "invoice": "Invoice {i}: amount due in 30 days, payment terms net 30, bill to Acme Ltd.",
    "receipt": "Receipt {i}: paid in full by card at the store; keep this receipt.",
    "contract": "Contract {i}: an agreement between the parties; each party shall sign.",
}
LABELS = [
    {"name": "invoice", "description": "a bill asking to be paid: amount due, payment terms"},
    {"name": "receipt", "description": "proof of a purchase already paid: paid, store, card"},
    {"name": "contract", "description": "an agreement between parties: terms, sign, clauses"},
]


# --- environment ---------------------------------------------------------------------------------


def database_url() -> tuple[str, object]:
    try:
        import psycopg

        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=2
        ) as conn:
            conn.execute(f'CREATE DATABASE "claudeapp_bench_{RUN}"')

        def drop() -> None:
            with psycopg.connect(
                "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
            ) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "claudeapp_bench_{RUN}" WITH (FORCE)')

        return f"postgresql://postgres@127.0.0.1:5432/claudeapp_bench_{RUN}", drop
    except Exception:
        path = ROOT / "var" / "bench" / f"jobs-{RUN}.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}", lambda: [
            p.unlink(missing_ok=True) for p in path.parent.glob(path.name + "*")
        ]


def configure(emulator_url: str, db_url: str, concurrency: int) -> dict[str, str]:
    from claudeapp.testing.env import _redis_reachable

    env = os.environ
    env.update(
        DJANGO_SETTINGS_MODULE="claudeapp.settings", SECRET_KEY=f"bench-{RUN}-not-for-production",
        DEBUG="0", SECURE_SSL_REDIRECT="0", ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING", STATIC_MANIFEST="0", DATABASE_URL=db_url,
        REDIS_KEY_PREFIX=f"bench-jobs-{RUN}", CHANNELS_PREFIX=f"bench-jobs-{RUN}",
        CELERY_QUEUE=f"bench-jobs-{RUN}", CELERY_KEY_PREFIX=f"bench-jobs-{RUN}:",
        CLASSIFICATION_QUEUE=f"bench-jobs-{RUN}", ANTHROPIC_BASE_URL=emulator_url,
        ANTHROPIC_API_KEY="emulator-key", CLAUDE_EMULATOR="1",
        CLAUDE_USER_RPM="0", CLAUDE_GLOBAL_RPM="0", CLAUDE_MAX_CONCURRENT="0",
        CLASSIFICATION_TICK_SECONDS="1", CLASSIFICATION_POLL_MIN_SECONDS="1",
        CLASSIFICATION_POLL_MAX_SECONDS="2", CLASSIFICATION_REALTIME_CONCURRENCY="8",
        BENCH_WORKER_CONCURRENCY=str(concurrency),
    )  # fmt: skip
    if "REDIS_URL" not in env:
        if _redis_reachable():
            env["REDIS_URL"] = "redis://127.0.0.1:6379"
        else:
            from claudeapp.testing.env import _start_bundled_redis

            env["REDIS_URL"] = _start_bundled_redis()
    return dict(env)


# --- processes and their memory ------------------------------------------------------------------


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Peaks:
    """Per process: the highest RSS, from the kernel's own high-water mark (VmHWM), and the CPU
    seconds used, read every half second (pool processes replaced meanwhile are not lost)."""

    def __init__(self) -> None:
        self.roles: dict[str, tuple[int, bool]] = {}  # role -> (pid, watch its pool too)
        self.peak: dict[str, int] = {}
        self.cpu: dict[str, float] = {}
        self.cpu_start: dict[str, float] = {}
        self.stop = threading.Event()

    def watch(self, role: str, pid: int, *, pool: bool = False) -> None:
        self.roles[role] = (pid, pool)

    def sample(self) -> None:
        for role, (pid, pool) in list(self.roles.items()):
            self._note(role, pid)
            if pool:
                for child in sorted(children(pid)):
                    self._note(f"{role} pool process (pid {child})", child)

    def _note(self, role: str, pid: int) -> None:
        hwm = status_kb(pid, "VmHWM") * 1024
        if hwm:
            self.peak[role] = max(self.peak.get(role, 0), hwm)
        cpu = cpu_seconds(pid)
        self.cpu_start.setdefault(role, cpu)
        self.cpu[role] = max(self.cpu.get(role, 0.0), cpu - self.cpu_start[role])

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.sample()


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [PYTHON, "-m", "celery", "-A", "claudeapp", "worker", "-Q", env["CELERY_QUEUE"],
         "-n", f"bench-{RUN}@localhost", "-P", "prefork", "-c", env["BENCH_WORKER_CONCURRENCY"],
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
        cwd=ROOT, env=env, start_new_session=True,
        stdout=open(ROOT / "var" / "bench" / f"jobs-{RUN}-worker.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def start_beat(env: dict[str, str]) -> subprocess.Popen:
    directory = ROOT / "var" / "bench" / f"jobs-{RUN}-beat"
    directory.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(  # noqa: S603
        [PYTHON, "-m", "celery", "-A", "claudeapp", "beat", "-s", str(directory / "schedule"),
         "--pidfile", str(directory / "beat.pid"), "--max-interval", "1", "-l", "WARNING"],
        cwd=ROOT, env=env, start_new_session=True,
        stdout=open(directory / "beat.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip


def wait_worker(timeout: float = 90.0) -> None:
    from claudeapp.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.control.ping(destination=[f"bench-{RUN}@localhost"], timeout=0.5):
            return
    raise RuntimeError("the worker did not answer")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


# --- data ----------------------------------------------------------------------------------------


def make_documents(document_set, count: int, offset: int = 0) -> None:
    """`count` ready documents, bulk-loaded (COPY on PostgreSQL)."""
    import hashlib

    from django.db import connection
    from django.utils import timezone

    from claudeapp.claude import estimate_tokens
    from documents.models import Document

    names = list(TOPICS)
    now = timezone.now()

    def rows():
        for i in range(offset, offset + count):
            topic = names[i % 3]
            text = TOPICS[topic].format(i=i)
            digest = hashlib.sha256(f"{document_set.pk}:{i}".encode()).hexdigest()
            yield (document_set.pk, "", f"{topic}-{i:06d}.txt", "text/plain", len(text), digest,
                   text, estimate_tokens(text), 0, "ready", "", "{}", now, now)  # fmt: skip

    if connection.vendor == "postgresql":
        table = Document._meta.db_table
        columns = (
            "document_set_id, file, filename, media_type, size, sha256, text, token_estimate, "
            "chunk_count, status, failure_reason, metadata, created_at, extracted_at"
        )
        connection.ensure_connection()
        with (
            connection.connection.cursor() as cursor,
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows():
                copy.write_row(row)
        connection.connection.commit()
        return
    for start in range(0, count, 5000):
        batch = []
        for _s, _f, filename, media, size, digest, text, tokens, *_rest in rows():
            batch.append(Document(document_set=document_set, filename=filename, media_type=media,
                                  size=size, sha256=digest, text=text, token_estimate=tokens,
                                  status="ready", extracted_at=now))  # fmt: skip
        Document.objects.bulk_create(batch[start : start + 5000])


def wait_job(job, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        job.refresh_from_db()
        if not job.is_open:
            return time.monotonic() - started
        time.sleep(0.25)
    raise RuntimeError(f"job {job.pk} still {job.status} after {timeout:.0f} s")


# --- the run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--realtime", type=int, default=400, help="documents in realtime mode")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker and beat logs")
    args = parser.parse_args()
    (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)

    from emulator.testing import EmulatorProcess

    emulator = EmulatorProcess(
        args=("--ttft-ms", "0", "--tokens-per-second", "0", "--batch-seconds", "0")
    ).start()
    db_url, drop_database = database_url()
    env = configure(emulator.url, db_url, args.concurrency)
    worker = beat = None
    peaks = Peaks()
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from django.contrib.auth import get_user_model
        from django.db.models import Count

        from claudeapp.claude import door
        from claudeapp.models import UsageRecord
        from documents.classification import services
        from documents.classification.models import ClassificationJob
        from documents.models import DocumentSet

        user = get_user_model().objects.create_user(f"bench-{RUN}", is_staff=True)
        batch_set = DocumentSet.objects.create(name=f"bench batch {RUN}", owner=user)
        live_set = DocumentSet.objects.create(name=f"bench realtime {RUN}", owner=user)
        made = time.monotonic()
        make_documents(batch_set, args.documents)
        make_documents(live_set, args.realtime, offset=args.documents)
        print(f"setup: {args.documents:,} + {args.realtime:,} ready documents loaded in "
              f"{time.monotonic() - made:.1f} s")  # fmt: skip

        worker, beat = start_worker(env), start_beat(env)
        wait_worker()
        time.sleep(3)  # pool processes build their door (the SDK import) in the background
        peaks.watch("bench (this process)", os.getpid())
        peaks.watch("worker", worker.pid, pool=True)
        peaks.watch("beat", beat.pid)
        peaks.watch("emulator", emulator.pid)
        sampler = threading.Thread(target=peaks.run, daemon=True)
        sampler.start()

        # (a) batch mode
        door.base_url  # noqa: B018 - this process builds its door (the SDK import) before the clock
        started = time.monotonic()
        job = services.classification_job_create(
            document_set=batch_set, created_by=user, labels=LABELS,
            instructions="Sort incoming business mail so the right team handles it.",
            extra_fields=["confidence"],
        )  # fmt: skip
        created = time.monotonic() - started
        wall = created + wait_job(job, args.timeout)
        peaks.sample()
        outcomes = dict(job.results.values_list("outcome").annotate(n=Count("id")))
        booked = UsageRecord.objects.filter(
            subject_type=services.SUBJECT_TYPE, subject_id=str(job.pk), kind="batch_result"
        ).count()
        batches = list(job.batches.order_by("id"))
        first_submit = min(b.submitted_at for b in batches if b.submitted_at)
        last_end = max(b.ended_at for b in batches if b.ended_at)
        last_ingest = max(b.ingested_at for b in batches if b.ingested_at)
        t0 = job.created_at

        def at(when) -> float:
            return (when - t0).total_seconds()

        print(f"\n(a) batch mode, {args.documents:,} documents, {len(batches)} batch(es), "
              f"worker --concurrency {args.concurrency}")  # fmt: skip
        print(f"  status {job.status}; results {outcomes}; ledger rows {booked:,}")
        print(f"  wall time, start to stored results: {wall:.1f} s "
              f"= {wall / TARGET_SECONDS:.2f} x the {TARGET_SECONDS} s target")  # fmt: skip
        print(f"    estimated and created in {created:.1f} s; from then on:")
        print(f"    planned at      +{at(job.planned_at):6.1f} s")
        print(f"    first submitted +{at(first_submit):6.1f} s (requests built and sent)")
        print(f"    last ended      +{at(last_end):6.1f} s (the emulator ran every line)")
        print(f"    last ingested   +{at(last_ingest):6.1f} s")
        print(f"    finished        +{at(job.finished_at):6.1f} s")
        print(f"  throughput: {args.documents / wall:,.0f} documents/s")

        # (b) realtime mode
        started = time.monotonic()
        live_job = services.classification_job_create(
            document_set=live_set, created_by=user, labels=LABELS, mode="realtime",
            instructions="Sort incoming business mail so the right team handles it.",
        )  # fmt: skip
        live_wall = time.monotonic() - started + wait_job(live_job, args.timeout)
        peaks.sample()
        live_done = live_job.results.filter(outcome="succeeded").count()
        print(f"\n(b) realtime mode, {args.realtime} documents at concurrency 8")
        print(f"  status {live_job.status}; {live_done} classified in {live_wall:.1f} s "
              f"= {live_done / live_wall:.1f} documents/s")  # fmt: skip

        print(f"\nper process, over both runs: peak RSS (VmHWM; target {TARGET_RSS // 2**20} MB "
              "each) and CPU seconds used")  # fmt: skip
        for role, peak in sorted(peaks.peak.items(), key=lambda rp: -rp[1]):
            print(f"  {role:<36} {peak / 2**20:7.1f} MB = {peak / TARGET_RSS:.2f} x target"
                  f"   cpu {peaks.cpu.get(role, 0.0):6.1f} s")  # fmt: skip
        print("  (postgres backends not included)")
        assert job.status == ClassificationJob.Status.COMPLETED
    finally:
        peaks.stop.set()
        for proc in (worker, beat):
            if proc is not None:
                stop(proc)
        emulator.stop()
        from django.db import connections

        connections.close_all()
        drop_database()
        if not args.keep_logs:
            import shutil

            shutil.rmtree(ROOT / "var" / "bench" / f"jobs-{RUN}-beat", ignore_errors=True)
            (ROOT / "var" / "bench" / f"jobs-{RUN}-worker.log").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
