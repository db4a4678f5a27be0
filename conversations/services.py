"""Writes. Views and the socket call these; these call the door (through the runner).

Reply services are async (the socket calls them and the runner is an asyncio task of the web
process); they answer quickly and leave the reply to the runner. Nothing on the way to the
first fragment writes to the database: the rows are written while the request is in flight.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from claudeapp.claude import CallContext, door
from claudeapp.redis import get_async_redis, get_redis, key
from claudeapp.replies import ReplyStatus, parallel_db, reply_key_for, reply_request_stop
from conversations import history as hist
from conversations.models import Conversation, Message, Persona, conversation_group
from conversations.selectors import conversation_visible_to, default_persona

if TYPE_CHECKING:
    from documents.models import DocumentSet

FEATURE = "chat"
MESSAGE_LABEL = "conversations.message"


class ChatError(Exception):
    """A reply that cannot start; ``user_message`` says why, in plain words."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class DocumentSetUnavailable(ChatError):
    """The conversation is bound to a set its owner can no longer read: the reply fails with
    this reason (no call to Claude) rather than quietly answering without the documents."""

    kind = "document_set_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "This conversation is bound to a document set you can no longer read. Choose "
            "another set, or none, in the conversation's settings, then retry."
        )


# --- conversations (sync: views) ---------------------------------------------------------------


def default_model_id() -> str:
    from claudeapp.claude.config import get_config

    return get_config().route(FEATURE).model


def conversation_create(
    *,
    owner,  # noqa: ANN001
    persona: Persona | None = None,
    document_set: DocumentSet | None = None,
) -> Conversation:
    """A new, empty conversation with the default persona and the chat route's model, bound
    to `document_set` when given (the caller has checked that `owner` may read it)."""
    return Conversation.objects.create(
        owner=owner,
        persona=persona if persona is not None else default_persona(),
        model_id=default_model_id(),
        max_tokens=settings.CHAT_DEFAULT_MAX_TOKENS,
        document_set=document_set,
    )


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    conversation.title = title.strip()[:120]
    conversation.save(update_fields=["title"])
    conversation_changed(conversation.pk)
    conversation_broadcast(conversation.pk, _title_html(conversation))
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete it and everything in it; a reply still streaming is stopped first."""
    active = get_redis().get(lock_key(conversation.pk))
    if active:
        from claudeapp.replies import reply_request_stop_sync

        reply_request_stop_sync(active.decode())
    conversation_id = conversation.pk
    conversation.delete()
    conversation_changed(conversation_id)


def conversation_settings_saved(*, conversation: Conversation) -> None:
    """Count the change and tell every open tab of the conversation its header changed."""
    from conversations.rendering import render_meta

    conversation_changed(conversation.pk)
    conversation_broadcast(conversation.pk, render_meta(conversation))


def conversation_broadcast(conversation_id: object, html: str) -> None:
    async_to_sync(get_channel_layer().group_send)(
        conversation_group(conversation_id),
        {"type": "chat.html", "html": html, "event_id": uuid.uuid4().hex},
    )


def _title_html(conversation: Conversation) -> str:
    from conversations.rendering import render_title

    return render_title(conversation)


def title_from(content: str) -> str:
    words = " ".join(content.split())
    return words if len(words) <= 60 else words[:57].rsplit(" ", 1)[0] + "…"


# --- the per-conversation lock (one reply at a time) and version ----------------------------------
#
# `chat:active:<id>` names the reply streaming in a conversation (one at a time);
# `chat:version:<id>` counts changes to what a request is built from (messages, settings). A reply
# takes the lock and reads the version in one round trip; a process that holds the conversation
# at that version builds the request without touching the database.

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return redis.call('GET', KEYS[2]) or '0'
end
return false
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return redis.call('INCR', KEYS[2])
"""


def lock_key(conversation_id: object) -> str:
    return key("chat", "active", conversation_id)


def version_key(conversation_id: object) -> str:
    return key("chat", "version", conversation_id)


async def conversation_lock_acquire(conversation_id: object, reply_key: str) -> str | None:
    """Take the conversation for one reply; its current version, or None when it is taken."""
    acquire = get_async_redis().register_script(_ACQUIRE)  # EVALSHA once loaded
    version = await acquire(
        keys=[lock_key(conversation_id), version_key(conversation_id)],
        args=[reply_key, settings.CHAT_LOCK_SECONDS],
    )
    return (
        None
        if version is None
        else version.decode()
        if isinstance(version, bytes)
        else str(version)
    )


async def conversation_lock_refresh(conversation_id: object, reply_key: str) -> None:
    redis = get_async_redis()
    await redis.set(lock_key(conversation_id), reply_key, xx=True, ex=settings.CHAT_LOCK_SECONDS)


async def conversation_lock_release(conversation_id: object, reply_key: str) -> None:
    """Give the conversation back (and count the change the reply made)."""
    release = get_async_redis().register_script(_RELEASE)
    await release(keys=[lock_key(conversation_id), version_key(conversation_id)], args=[reply_key])


def conversation_lock_release_sync(conversation_id: object, reply_key: str) -> None:
    get_redis().eval(
        _RELEASE, 2, lock_key(conversation_id), version_key(conversation_id), reply_key
    )


def conversation_changed(conversation_id: object) -> None:
    """Count a change (settings, title, a swept reply): cached copies are stale now."""
    get_redis().incr(version_key(conversation_id))


async def conversation_active_reply(conversation_id: object) -> str | None:
    """The reply key streaming in this conversation now, if any."""
    value = await get_async_redis().get(lock_key(conversation_id))
    return value.decode() if value else None


# --- loading what a reply needs ------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationState:
    """The conversation's settings, detached from the ORM."""

    id: uuid.UUID
    owner_id: int
    title: str
    model_id: str
    max_tokens: int
    thinking: bool
    thinking_budget: int
    effort: str
    temperature: Decimal | None
    system_prompt: str
    history_start: dt.datetime | None
    total_cost: Decimal
    document_set_id: int | None = None


def _state(conversation: Conversation) -> ConversationState:
    return ConversationState(
        id=conversation.pk,
        owner_id=conversation.owner_id,
        title=conversation.title,
        model_id=conversation.model_id,
        max_tokens=conversation.max_tokens,
        thinking=conversation.thinking == Conversation.Thinking.ON,
        thinking_budget=conversation.thinking_budget,
        effort=conversation.effort,
        temperature=conversation.temperature,
        system_prompt=conversation.effective_system_prompt(),
        history_start=conversation.history_start,
        total_cost=conversation.total_cost_usd,
        document_set_id=conversation.document_set_id,
    )


def _stored(message: Message) -> hist.StoredTurn:
    return hist.StoredTurn(
        id=str(message.pk),
        role=message.role,
        status=message.status,
        content=list(message.content or []),
        continuations=list(message.continuations or []),
        model_id=message.model_id,
        tokens=message.tokens,
        created_at=message.created_at,
    )


def _load_sync(user, conversation_id: object) -> tuple[ConversationState, list[Message]]:  # noqa: ANN001
    conversation = (
        conversation_visible_to(user).select_related("persona").filter(pk=conversation_id).first()
    )
    if conversation is None:
        raise ChatError("This conversation no longer exists.")
    messages = list(conversation.messages.order_by("created_at", "id"))
    return _state(conversation), messages


@dataclass(frozen=True)
class _Cached:
    version: str
    loaded_for: int  # the user it was read for (through `conversation_visible_to`)
    state: ConversationState
    messages: tuple[Message, ...]


# Conversations this process has open, by id: (version, state, messages). Bounded, LRU.
_CACHE: OrderedDict[str, _Cached] = OrderedDict()
_CACHE_SIZE = 512


def _remember(
    conversation_id: object, version: str, user_id: int, state: ConversationState, messages
) -> None:  # noqa: ANN001
    _CACHE[str(conversation_id)] = _Cached(version, user_id, state, tuple(messages))
    _CACHE.move_to_end(str(conversation_id))
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def forget(conversation_id: object) -> None:
    _CACHE.pop(str(conversation_id), None)


async def _load(
    user, conversation_id: object, version: str
) -> tuple[ConversationState, list[Message]]:  # noqa: ANN001
    """The conversation and its messages: from this process's copy when it is at `version`,
    else from the database (and remembered)."""
    cached = _CACHE.get(str(conversation_id))
    if cached is not None and cached.version == version and cached.loaded_for == user.pk:
        _CACHE.move_to_end(str(conversation_id))
        return cached.state, list(cached.messages)
    state, messages = await parallel_db(_load_sync)(user, conversation_id)
    _remember(conversation_id, version, user.pk, state, messages)
    return state, messages


async def conversation_preload(user, conversation_id: object) -> bool:  # noqa: ANN001
    """Whether `user` may open the conversation; if so, keep a copy for the replies to come (a
    socket calls this when it connects, well before the first message)."""
    version = await get_async_redis().get(version_key(conversation_id))
    version = version.decode() if version else "0"
    try:
        await _load(user, conversation_id, version)
    except ChatError:
        return False
    return True


async def conversation_refresh(user, conversation_id: object) -> None:  # noqa: ANN001
    """Re-read the conversation after a reply changed it (off the path of the next reply)."""
    with contextlib.suppress(ChatError):
        await conversation_preload(user, conversation_id)


# --- building the request ------------------------------------------------------------------------


@dataclass
class RequestPlan:
    params: dict[str, Any]
    model_id: str  # what the registry resolved the conversation's model to
    history: hist.History
    # Bound to a set: what the prompt's documents are, in request order (numbers citations).
    sources: list[dict] | None = None
    # Why the reply must fail without calling Claude (the set can no longer be read).
    refusal: ChatError | None = None


@dataclass(frozen=True)
class BoundDocuments:
    """A bound conversation's share of the prompt, from RAG's prompts: its instruction, the
    whole set as `document` blocks (the cached prefix) or the passages retrieved for the
    latest user message as `search_result` blocks (that turn only)."""

    instruction: str
    documents: list[dict]
    results: list[dict]
    sources: list[dict]
    tokens: int


def latest_question(turns: list[hist.StoredTurn]) -> str:
    """The latest message the user typed (a "continue" prompt is ours, not theirs)."""
    for turn in reversed(turns):
        if turn.role == "user" and turn.id != "continue":
            text = "\n\n".join(b.get("text", "") for b in turn.content if b.get("type") == "text")
            if text.strip():
                return text
    return ""


def bound_documents(
    *,
    user,  # noqa: ANN001
    conversation_id: object,
    document_set_id: int,
    question: str,
    model_id: str,
    context_window: int,
) -> BoundDocuments | None:
    """The documents part of a bound conversation's next request, through RAG's machinery
    (`prompt_for_question`), if `user` may still read the set. None when the conversation is
    no longer bound (its set was deleted); `DocumentSetUnavailable` when it is bound to a set
    the user cannot read."""
    from claudeapp.claude.tokens import estimate_block_tokens
    from documents.rag import prompts
    from documents.rag.services import prompt_for_question
    from documents.selectors import documentset_visible_to

    readable = documentset_visible_to(user)
    if not readable.filter(pk=document_set_id).exists():
        # This process may hold a stale copy (deleting a set nulls the link without a signal).
        current = (
            Conversation.objects.filter(pk=conversation_id)
            .values_list("document_set_id", flat=True)
            .first()
        )
        if current != document_set_id:
            conversation_changed(conversation_id)
        if current is None:
            return None
        if current == document_set_id or not readable.filter(pk=current).exists():
            raise DocumentSetUnavailable()
        document_set_id = current
    # The whole set while it fits RAG's budget and half the model's window, else retrieval.
    budget = min(settings.RAG_WHOLE_SET_MAX_TOKENS, context_window // 2)
    strategy = prompts.choose_strategy(prompts.set_size_tokens(document_set_id), budget)
    prompt, _retrieval_ms = prompt_for_question(
        document_set_id=document_set_id, question=question, model_id=model_id, strategy=strategy
    )
    whole = prompt.strategy == prompts.Strategy.WHOLE_SET
    return BoundDocuments(
        instruction=prompt.system,
        documents=prompt.documents if whole else [],
        results=[] if whole else prompt.documents,
        sources=prompt.sources,
        tokens=sum(estimate_block_tokens(b) for b in prompt.documents),
    )


def _with_results(messages: list[dict], results: list[dict]) -> list[dict]:
    """`messages` with the retrieved passages opening the latest user turn."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index]["role"] == "user":
            turn = {**messages[index], "content": [*results, *messages[index]["content"]]}
            return [*messages[:index], turn, *messages[index + 1 :]]
    return [*messages, {"role": "user", "content": list(results)}]


def _load_user(user_id: int):  # noqa: ANN202 - a User
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=user_id).first()


async def build_request(
    state: ConversationState,
    turns: list[hist.StoredTurn],
    *,
    subject: object,
    user_id: int,
    user: Any = None,
) -> RequestPlan:
    """Params for `door.astream`: the cached layout (system 1h, conversation tail 5m) from the
    door's planner, history trimmed to the model's budget, thinking/effort/temperature only
    where the registry allows them. A conversation bound to a set asks through RAG's prompts:
    its instruction joins the system prompt, the whole set travels as `document` blocks after
    it (1h, the same every turn) or the retrieved passages open the latest user turn."""
    from claudeapp.claude.config import aget_config
    from claudeapp.claude.planner import plan_prompt
    from claudeapp.claude.registry import resolve

    config = await aget_config()
    spec = resolve(config, state.model_id)
    max_tokens = max(1, min(state.max_tokens, spec.max_output_tokens))
    system: str | list[dict] | None = state.system_prompt or None
    system_tokens = hist.text_tokens(system) if system else 0
    bound: BoundDocuments | None = None
    refusal: ChatError | None = None
    if state.document_set_id is not None:
        try:
            bound = await parallel_db(bound_documents)(
                user=user if user is not None else await parallel_db(_load_user)(user_id),
                conversation_id=state.id,
                document_set_id=state.document_set_id,
                question=latest_question(turns),
                model_id=spec.model_id,
                context_window=spec.context_window,
            )
        except DocumentSetUnavailable as exc:
            refusal = exc
        if bound is not None:
            texts = [t for t in (state.system_prompt, bound.instruction) if t]
            system = [{"type": "text", "text": t} for t in texts]
            system_tokens = sum(hist.text_tokens(t) for t in texts) + bound.tokens
    budget = spec.context_window - max_tokens - system_tokens - settings.CHAT_CONTEXT_MARGIN_TOKENS
    history = hist.build_history(
        turns,
        model_id=spec.model_id,
        budget_tokens=budget,
        start=state.history_start,
        trim_target=settings.CHAT_TRIM_TARGET,
    )
    if history.tokens > budget * settings.CHAT_COUNT_TOKENS_ABOVE:
        # Near the limit the local estimate is not good enough: ask the API (cached).
        exact = await door.acount_tokens(
            CallContext(FEATURE, user_id, (MESSAGE_LABEL, subject)),
            messages=history.messages,
            model=state.model_id,
            system=system,
        )
        if exact > budget + system_tokens:
            scale = history.tokens / max(exact, 1)
            history = hist.build_history(
                turns,
                model_id=spec.model_id,
                budget_tokens=int(budget * scale),
                start=history.start or state.history_start,
                trim_target=settings.CHAT_TRIM_TARGET,
            )
    messages = history.messages
    if bound is not None and bound.results:
        messages = _with_results(messages, bound.results)
    # The door's planner, fed the spec resolved above (no second registry read).
    plan = plan_prompt(
        min_cacheable_tokens=spec.min_cacheable_tokens,
        system=system,
        documents=bound.documents if bound is not None else (),
        history=messages,
    )
    params: dict[str, Any] = {**plan.params(), "max_tokens": max_tokens, "model": state.model_id}
    thinking = hist.thinking_param(
        modes=spec.thinking_modes,
        wanted=state.thinking,
        budget=state.thinking_budget,
        max_tokens=max_tokens,
    )
    if thinking is not None:
        params["thinking"] = thinking
    if state.effort and spec.effort:
        params["effort"] = state.effort
    if state.temperature is not None and spec.sampling_api_version:
        params["temperature"] = float(state.temperature)
    return RequestPlan(
        params=params,
        model_id=spec.model_id,
        history=history,
        sources=bound.sources if bound is not None else None,
        refusal=refusal,
    )


# --- starting replies (async: the socket) --------------------------------------------------------


def _validate_content(content: object) -> str:
    if not isinstance(content, str) or not content.strip():
        raise ChatError("Type a message first.")
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise ChatError(
            f"Your message is {len(content):,} characters long; the limit is {limit:,}. "
            "Shorten it or split it into several messages."
        )
    return content.strip("\n")


async def conversation_send(*, user, conversation_id: object, content: object) -> uuid.UUID:  # noqa: ANN001
    """Start a reply to a new user message; returns the reply's message id at once."""
    from conversations.runner import ChatRun

    text = _validate_content(content)
    assistant_id = uuid.uuid4()
    reply_key = reply_key_for(MESSAGE_LABEL, assistant_id)
    version = await conversation_lock_acquire(conversation_id, reply_key)
    if version is None:
        raise ChatError("Claude is still answering. Wait for the reply or stop it first.")
    try:
        state, messages = await _load(user, conversation_id, version)
        now = timezone.now()
        user_message = Message(
            id=uuid.uuid4(),
            conversation_id=state.id,
            role=Message.Role.USER,
            content=[{"type": "text", "text": text}],
            status=ReplyStatus.COMPLETE,
            tokens=hist.text_tokens(text),
            created_at=now,
        )
        turns = [_stored(m) for m in messages] + [_stored(user_message)]
        plan = await build_request(state, turns, subject=assistant_id, user_id=user.pk, user=user)
        previous = next((m for m in reversed(messages) if m.role == Message.Role.ASSISTANT), None)
        run = ChatRun(
            mode="send",
            user=user,
            state=state,
            plan=plan,
            assistant_id=assistant_id,
            user_message=user_message,
            previous_assistant=previous,
            created_at=now + dt.timedelta(microseconds=1),
        )
    except BaseException:
        await conversation_lock_release(conversation_id, reply_key)
        raise
    run.spawn()
    return assistant_id


async def _rerun(*, user, conversation_id: object, message_id: object, mode: str) -> uuid.UUID:  # noqa: ANN001
    from conversations.runner import ChatRun

    try:
        assistant_id = uuid.UUID(str(message_id))
    except ValueError:
        raise ChatError("That reply no longer exists.") from None
    reply_key = reply_key_for(MESSAGE_LABEL, assistant_id)
    version = await conversation_lock_acquire(conversation_id, reply_key)
    if version is None:
        raise ChatError("Claude is still answering. Wait for the reply or stop it first.")
    try:
        state, messages = await _load(user, conversation_id, version)
        index = next((i for i, m in enumerate(messages) if m.pk == assistant_id), None)
        if index is None or messages[index].role != Message.Role.ASSISTANT:
            raise ChatError("That reply no longer exists.")
        target = messages[index]
        if index != len(messages) - 1:
            raise ChatError("Only the latest reply can be retried, regenerated or continued.")
        allowed = {
            "retry": {ReplyStatus.FAILED, ReplyStatus.STOPPED, ReplyStatus.REFUSED},
            "regenerate": {
                ReplyStatus.COMPLETE, ReplyStatus.STOPPED, ReplyStatus.TRUNCATED,
                ReplyStatus.REFUSED, ReplyStatus.FAILED,
            },
            "continue": {ReplyStatus.TRUNCATED},
        }[mode]  # fmt: skip
        if target.status not in allowed:
            raise ChatError("That reply cannot be changed now.")
        continuation: dict[str, Any] | None = None
        if mode == "continue":
            from claudeapp.claude.config import aget_config
            from claudeapp.claude.registry import resolve

            spec = resolve(await aget_config(), state.model_id)
            thinking_on = hist.thinking_param(
                modes=spec.thinking_modes,
                wanted=state.thinking,
                budget=state.thinking_budget,
                max_tokens=state.max_tokens,
            ) not in (None, {"type": "disabled"})
            prefill = spec.prefill and not thinking_on
            continuation = {"mode": "prefill" if prefill else "turn"}
            if not prefill:
                continuation["prompt"] = hist.CONTINUE_PROMPT
            turns = [_stored(m) for m in messages]
            if not prefill:
                turns.append(
                    hist.StoredTurn(
                        "continue",
                        "user",
                        ReplyStatus.COMPLETE,
                        [{"type": "text", "text": hist.CONTINUE_PROMPT}],
                        [],
                        "",
                        hist.text_tokens(hist.CONTINUE_PROMPT),
                        timezone.now(),
                    )  # fmt: skip
                )
        else:
            turns = [_stored(m) for m in messages[:index]]
        plan = await build_request(state, turns, subject=assistant_id, user_id=user.pk, user=user)
        if continuation is not None and continuation["mode"] == "prefill":
            plan.params["messages"] = hist.strip_trailing_whitespace(plan.params["messages"])
        previous = next(
            (m for m in reversed(messages[:index]) if m.role == Message.Role.ASSISTANT), None
        )
        run = ChatRun(
            mode=mode,
            user=user,
            state=state,
            plan=plan,
            assistant_id=assistant_id,
            user_message=None,
            previous_assistant=previous,
            existing=target,
            continuation=continuation,
            created_at=target.created_at,
        )
    except BaseException:
        await conversation_lock_release(conversation_id, reply_key)
        raise
    run.spawn()
    return assistant_id


async def reply_retry(*, user, conversation_id: object, message_id: object) -> uuid.UUID:  # noqa: ANN001
    """Run a failed (or stopped) reply again, in place."""
    return await _rerun(
        user=user, conversation_id=conversation_id, message_id=message_id, mode="retry"
    )


async def reply_regenerate(*, user, conversation_id: object, message_id: object) -> uuid.UUID:  # noqa: ANN001
    """Replace the latest reply with a new one to the same question."""
    return await _rerun(
        user=user, conversation_id=conversation_id, message_id=message_id, mode="regenerate"
    )


async def reply_continue(*, user, conversation_id: object, message_id: object) -> uuid.UUID:  # noqa: ANN001
    """Continue a truncated reply: prefill where the model allows it, else a "continue" turn;
    either way the output is appended to the same reply."""
    return await _rerun(
        user=user, conversation_id=conversation_id, message_id=message_id, mode="continue"
    )


@parallel_db
def _owns_message(user, conversation_id: object, message_id: object) -> bool:  # noqa: ANN001
    try:
        uuid.UUID(str(message_id))
    except ValueError:
        return False
    return Message.objects.filter(
        pk=message_id,
        conversation_id=conversation_id,
        conversation__in=conversation_visible_to(user),
    ).exists()


async def reply_stop(*, user, conversation_id: object, message_id: object) -> bool:  # noqa: ANN001
    """Stop a streaming reply from any tab; it keeps its partial text as ``stopped``."""
    reply_key = reply_key_for(MESSAGE_LABEL, message_id)
    # The conversation's lock names its live reply (the socket already checked the
    # conversation); anything else must be a message of this user's conversation.
    if await conversation_active_reply(conversation_id) != reply_key and not await _owns_message(
        user, conversation_id, message_id
    ):
        return False
    await reply_request_stop(reply_key)
    return True


# --- finishing (called by the runner) ------------------------------------------------------------


@parallel_db
def insert_turn(*, user_message: Message | None, assistant: Message, title: str | None) -> None:
    with transaction.atomic():
        # One INSERT, and no post_save signal: the lock's release counts this change.
        Message.objects.bulk_create([m for m in (user_message, assistant) if m is not None])
        fields: dict[str, Any] = {"updated_at": timezone.now()}
        if title:
            Conversation.objects.filter(pk=assistant.conversation_id, title="").update(title=title)
        Conversation.objects.filter(pk=assistant.conversation_id).update(**fields)


@parallel_db
def reset_reply(*, assistant_id: uuid.UUID, run_id: uuid.UUID, keep_content: bool) -> int:
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": ReplyStatus.STREAMING,
        "run_id": run_id,
        "error": "",
        "error_kind": "",
        "started_at": now,
        "heartbeat_at": now,
        "finished_at": None,
    }
    if not keep_content:
        fields.update(
            content=[], continuations=[], html="", html_version=0, stop_reason="",
            model_id="", input_tokens=0, cache_read_tokens=0, cache_write_tokens=0,
            output_tokens=0, cost_usd=None, ttft_ms=None, duration_ms=None, tokens=0,
            sources=[], citations=[],
        )  # fmt: skip
    updated = Message.objects.filter(pk=assistant_id).update(**fields)
    Conversation.objects.filter(messages__pk=assistant_id).update(updated_at=now)
    return updated


@parallel_db
def save_history_start(conversation_id: object, start: dt.datetime | None) -> None:
    Conversation.objects.filter(pk=conversation_id).update(history_start=start)
