"""JSON that validates against a JSON Schema, chosen from the input text (structured output and
forced tool inputs).

Covers what pydantic and hand-written schemas use: ``type`` (also as a list), ``enum``,
``const``, ``properties``/``required``/``additionalProperties``, ``items``/``prefixItems`` with
``minItems``/``maxItems``/``uniqueItems``, numeric bounds (``minimum``, ``maximum``, the
exclusive ones, ``multipleOf``), string ``minLength``/``maxLength``/``format``, ``$defs``/
``definitions`` with ``$ref``, ``anyOf``/``oneOf`` (an Optional picks its non-null branch) and
``allOf``. ``pattern`` is honoured only when one of a few simple candidates happens to match.

Labels: for an ``enum`` of strings (or a ``oneOf`` of ``const`` s), the label whose words occur
most in the input wins. A label's words are its name (split on ``_``/``-``/case, counted twice)
and its description: from a ``const`` branch's ``description``, or from a ``label: text`` line
in the enum's (or its property's) ``description``. Ties are broken by a seeded hash.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from dataclasses import dataclass

__all__ = ["Context", "choose_label", "generate", "instance_for", "violate", "words"]

_STOP_TEXT = """a an and are as at be but by for from has have i in into is it its of on or our so
that the their them then there these this those to was we were what when where which who will
with you your any all not no other else about than can may tell give show make please
does did just also very"""
STOPWORDS = frozenset(_STOP_TEXT.split())
_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_DEPTH = 12


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    # Plural and simple verb forms fold together so "invoices" scores for "invoice".
    for suffix in ("ies", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def words(text: str) -> list[str]:
    """Lower-case, stemmed content words of ``text`` (stopwords dropped)."""
    text = _CAMEL.sub(" ", text).lower()
    return [_stem(w) for w in _WORD.findall(text) if w not in STOPWORDS]


@dataclass
class Context:
    """The input the generated values draw from (word counts and keywords computed on first
    use: a batch line classifying a long document needs the counts, never the keywords)."""

    text: str
    salt: bytes

    @functools.cached_property
    def counts(self) -> Counter:
        return Counter(words(self.text))

    @functools.cached_property
    def keywords(self) -> list[str]:
        raw = re.findall(r"[A-Za-z][A-Za-z'-]{3,}", self.text)
        first: dict[str, str] = {}
        for w in raw:
            if w.lower() not in STOPWORDS:
                first.setdefault(w.lower(), w)
        # Most frequent first, ties in order of appearance; original spelling kept.
        ranked = sorted(first, key=lambda w: -self.counts[_stem(w)])
        return [first[w] for w in ranked[:12]] or ["your request"]

    def tiebreak(self, label: str) -> int:
        digest = hashlib.blake2b(self.salt + b"\x00" + label.encode(), digest_size=8).digest()
        return int.from_bytes(digest)

    def snippet(self, n_words: int = 12) -> str:
        ws = self.text.split()
        text = " ".join(ws[:n_words])
        return text + (" ..." if len(ws) > n_words else "") if text else "(no text)"


def _description_for(label: str, description: str | None) -> str:
    if not description:
        return ""
    pat = re.compile(
        r"(?:^|[\n;])\s*[-*]?\s*[\"'`]?"
        + re.escape(label)
        + r"[\"'`]?\s*(?::|=|-|–|—)\s*([^\n;]+)",
        re.IGNORECASE,
    )
    m = pat.search(description)
    return m.group(1) if m else ""


def choose_label(labels: list[str], descriptions: dict[str, str], ctx: Context) -> str:
    """The label whose name/description words occur most in the input; ties by seeded hash."""
    return _ranked_labels(labels, descriptions, ctx)[0][1]


def _ranked_labels(
    labels: list[str], descriptions: dict[str, str], ctx: Context
) -> list[tuple[int, str]]:
    scored = []
    for label in labels:
        name_words = set(words(label))
        desc_words = set(words(descriptions.get(label, ""))) - name_words
        score = 2 * sum(ctx.counts[w] for w in name_words) + sum(ctx.counts[w] for w in desc_words)
        scored.append((score, label))
    scored.sort(key=lambda sl: (-sl[0], ctx.tiebreak(sl[1])))
    return scored


class _Gen:
    def __init__(self, root: dict, ctx: Context) -> None:
        self.root = root
        self.ctx = ctx

    def resolve(self, schema: object) -> dict:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            ref = schema["$ref"]
            target: object = self.root
            if isinstance(ref, str) and ref.startswith("#"):
                for part in ref.lstrip("#").strip("/").split("/"):
                    if not part:
                        continue
                    part = part.replace("~1", "/").replace("~0", "~")
                    target = target.get(part, {}) if isinstance(target, dict) else {}
            else:
                target = {}
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if isinstance(target, dict) else rest
            seen += 1
        if isinstance(schema, dict) and "allOf" in schema:
            merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
            for sub in schema["allOf"]:
                sub = self.resolve(sub)
                for key, val in sub.items():
                    if key == "properties":
                        merged.setdefault("properties", {}).update(val)
                    elif key == "required":
                        merged["required"] = list(
                            dict.fromkeys([*merged.get("required", []), *val])
                        )
                    else:
                        merged.setdefault(key, val)
            schema = merged
        return schema if isinstance(schema, dict) else {}

    def value(self, schema: object, name: str = "", depth: int = 0, desc: str | None = None):
        s = self.resolve(schema)
        desc = s.get("description") or desc
        if "const" in s:
            return s["const"]
        if "enum" in s:
            labels = s["enum"]
            if all(isinstance(v, str) for v in labels) and labels:
                return choose_label(
                    labels, {lb: _description_for(lb, desc) for lb in labels}, self.ctx
                )
            return labels[self.ctx.tiebreak(name) % len(labels)] if labels else None
        for key in ("oneOf", "anyOf"):
            if key in s:
                return self._union(s[key], name, depth, desc)
        stype = s.get("type")
        if isinstance(stype, list):
            non_null = [t for t in stype if t != "null"]
            stype = non_null[0] if non_null else "null"
        if stype is None:
            if "properties" in s:
                stype = "object"
            elif "items" in s or "prefixItems" in s:
                stype = "array"
            else:
                stype = "string"
        if stype == "object":
            return self._object(s, depth)
        if stype == "array":
            return self._array(s, name, depth, desc)
        if stype == "integer":
            return self._integer(s, name)
        if stype == "number":
            return self._number(s, name)
        if stype == "boolean":
            return self.ctx.tiebreak("bool:" + name) % 2 == 0
        if stype == "null":
            return None
        return self._string(s, name)

    def _union(self, branches: list, name: str, depth: int, desc: str | None):
        resolved = [self.resolve(b) for b in branches]
        consts = [b for b in resolved if "const" in b and isinstance(b["const"], str)]
        if consts and len(consts) == len(resolved):
            labels = [b["const"] for b in consts]
            descs = {b["const"]: str(b.get("description") or b.get("title") or "") for b in consts}
            return choose_label(labels, descs, self.ctx)
        non_null = [b for b in resolved if b.get("type") != "null"]
        pick = (non_null or resolved or [{}])[0]
        return self.value(pick, name, depth, desc)

    def _object(self, s: dict, depth: int) -> dict:
        props = s.get("properties") or {}
        required = set(s.get("required") or [])
        out = {}
        for key, sub in props.items():
            if depth >= _MAX_DEPTH and key not in required:
                continue
            out[key] = self.value(sub, key, depth + 1)
        return out

    def _array(self, s: dict, name: str, depth: int, desc: str | None) -> list:
        lo = int(s.get("minItems", 0))
        hi = s.get("maxItems")
        prefix = s.get("prefixItems") or []
        items = s.get("items", {})
        if isinstance(items, bool):
            items = {}
        item = self.resolve(items)
        if "enum" in item and all(isinstance(v, str) for v in item["enum"]) and item["enum"]:
            # Multi-label: every label the input mentions, best first, within the bounds.
            labels = item["enum"]
            idesc = item.get("description") or desc
            ranked = _ranked_labels(
                labels, {lb: _description_for(lb, idesc) for lb in labels}, self.ctx
            )
            n = max(1, sum(1 for score, _ in ranked if score > 0), lo)
            n = min(n, len(labels))
            if hi is not None:
                n = min(n, int(hi))
            return [lb for _, lb in ranked[:n]]
        default = 1 + self.ctx.tiebreak("len:" + name) % 3
        if depth >= _MAX_DEPTH:
            default = 0
        n = max(lo, default, len(prefix))
        if hi is not None:
            n = min(n, int(hi))
        out = []
        for i in range(n):
            sub = prefix[i] if i < len(prefix) else items
            out.append(self.value(sub, f"{name}[{i}]", depth + 1))
        if s.get("uniqueItems"):
            for i in range(len(out)):
                if out[i] in out[:i] and isinstance(out[i], str):
                    out[i] = f"{out[i]} {i + 1}"
        return out

    def _bounds(self, s: dict, integer: bool) -> tuple[float | None, float | None]:
        lo, hi = s.get("minimum"), s.get("maximum")
        step = 1 if integer else 1e-6
        if "exclusiveMinimum" in s and not isinstance(s["exclusiveMinimum"], bool):
            v = s["exclusiveMinimum"] + step
            lo = v if lo is None else max(lo, v)
        if "exclusiveMaximum" in s and not isinstance(s["exclusiveMaximum"], bool):
            v = s["exclusiveMaximum"] - step
            hi = v if hi is None else min(hi, v)
        return lo, hi

    def _integer(self, s: dict, name: str) -> int:
        lo, hi = self._bounds(s, True)
        lo_i = None if lo is None else int(-(-lo // 1))
        hi_i = None if hi is None else int(hi // 1)
        r = self.ctx.tiebreak("int:" + name)
        if lo_i is not None and hi_i is not None:
            v = lo_i + r % max(1, hi_i - lo_i + 1)
        elif lo_i is not None:
            v = lo_i + r % 10
        elif hi_i is not None:
            v = min(hi_i, r % 10)
        else:
            v = 1 + r % 10
        mult = s.get("multipleOf")
        if isinstance(mult, int) and mult > 0:
            v = (v // mult) * mult
            if lo_i is not None and v < lo_i:
                v += mult
        return v

    def _number(self, s: dict, name: str) -> float:
        lo, hi = self._bounds(s, False)
        frac = (self.ctx.tiebreak("num:" + name) % 1000) / 1000
        if lo is not None and hi is not None:
            v = lo + (hi - lo) * (0.25 + frac / 2)
        elif lo is not None:
            v = lo + 10 * frac
        elif hi is not None:
            v = hi - 10 * frac
        elif any(k in name.lower() for k in ("confidence", "probability", "score")):
            v = 0.5 + frac / 2
        else:
            v = 100 * frac
        mult = s.get("multipleOf")
        if isinstance(mult, int | float) and mult > 0:
            v = round(v / mult) * mult
            if lo is not None and v < lo:
                v += mult
            if hi is not None and v > hi:
                v -= mult
        else:
            rounded = round(v, 2)
            if (lo is None or rounded >= lo) and (hi is None or rounded <= hi):
                v = rounded
        return float(v)

    def _string(self, s: dict, name: str) -> str:
        fmt = s.get("format")
        lname = name.lower()
        ctx = self.ctx
        if fmt == "date-time":
            text = "2026-01-01T00:00:00Z"
        elif fmt == "date":
            text = "2026-01-01"
        elif fmt == "time":
            text = "12:00:00Z"
        elif fmt == "email":
            text = "user@example.com"
        elif fmt in ("uri", "url"):
            text = "https://example.com/"
        elif fmt == "uuid":
            h = hashlib.blake2b(ctx.salt + name.encode(), digest_size=16).hexdigest()
            text = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"
        elif any(
            k in lname
            for k in (
                "summary",
                "answer",
                "reason",
                "explanation",
                "rationale",
                "description",
                "text",
                "comment",
                "justification",
            )
        ):
            text = f"[offline emulator] {ctx.snippet()}"
        elif any(k in lname for k in ("name", "title", "topic", "subject")):
            text = " ".join(w.capitalize() for w in ctx.keywords[:3])
        elif lname.endswith("id"):
            text = hashlib.blake2b(ctx.salt + name.encode(), digest_size=6).hexdigest()
        else:
            kw = ctx.keywords
            text = kw[ctx.tiebreak("str:" + name) % len(kw)]
        lo = int(s.get("minLength", 0))
        hi = s.get("maxLength")
        if len(text) < lo:
            text = (text + " " + "x" * lo)[:lo] if text else "x" * lo
        if hi is not None and len(text) > int(hi):
            text = text[: int(hi)]
        pattern = s.get("pattern")
        if isinstance(pattern, str):
            try:
                rx = re.compile(pattern)
            except re.error:
                return text
            if not rx.search(text):
                for cand in ("a", "A", "0", "abc", "ABC", "a1", "x-1", "2026-01-01", "A1"):
                    if rx.search(cand) and len(cand) >= lo and (hi is None or len(cand) <= hi):
                        return cand
        return text


def generate(schema: dict, ctx: Context) -> object:
    """A value valid against ``schema`` (within the limits in the module docstring)."""
    return _Gen(schema, ctx).value(schema)


def instance_for(schema: dict, text: str, seed: int = 0) -> object:
    """``generate`` from plain text: the ``instance_for(schema, text)`` part 2 injects."""
    return generate(schema, Context(text, f"{seed}:{text}".encode()))


def violate(schema: dict, value: object) -> object:
    """A value that breaks ``schema``: a required key dropped, or else the wrong JSON type."""
    root = _Gen(schema, Context("", b"")).resolve(schema)
    if isinstance(value, dict) and root.get("required"):
        broken = dict(value)
        broken.pop(root["required"][0], None)
        return broken
    if isinstance(value, dict | list):
        return "[offline emulator] invalid_output fault"
    return {"invalid_output": "[offline emulator] invalid_output fault"}
