"""``/api/v1/kb`` and ``/api/v1/advisories``: the vulnerability knowledge base (read; add,
replace and remove the operator's entries with a token) and advisories built from it.

Where operator entries live: one TOML file beside the store, ``operator-kb.toml`` in the
database's directory (:func:`operator_kb_path`), in the very format of ``--kb FILE`` (docs/kb.md),
so ``stormwatch kb check``, ``--kb`` and ``$STORMWATCH_KB`` read it as they read any operator
file. Every write builds the whole new file, checks it with the knowledge base's own schema check
(:func:`stormwatch.threat.kb.load_file`: the file, entry and field at fault come back as a 422),
and only then replaces the old file atomically (``os.replace``), under a lock so two writers
cannot lose each other's entry. The server's knowledge base is reloaded when the file changes.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam

from stormwatch.threat.advisory import DEFAULT_DAYS, build_advisory, to_html, to_markdown, under_exploitation
from stormwatch.threat.kb import KBError, KnowledgeBase, Vuln, load_file, load_kb, parse_entry
from stormwatch.threat.level import gather_signals, level_in_force
from stormwatch.threat.rules import load_rules
from stormwatch.web.api_common import NOT_FOUND, READ_ERRORS, WRITE_ERRORS, ApiRoute, as_of, bad, not_found
from stormwatch.web.api_models import (
    AdvisoriesOut,
    AdvisoryItemOut,
    AdvisoryOut,
    DeletedOut,
    KbEntryIn,
    KbEntryOut,
    KbListOut,
)
from stormwatch.web.deps import (
    get_engine,
    get_settings,
    get_state,
    get_store,
    read_guard,
    require_token,
    require_writable,
)

if TYPE_CHECKING:
    from stormwatch.web.app import WebState
    from stormwatch.web.settings import WebSettings

router = APIRouter(route_class=ApiRoute)
OPERATOR_KB = "operator-kb.toml"
_write_lock = threading.Lock()
# per server state: the operator file's mtime when its entries were last merged (WebState is not
# hashable, so by id, with a weak reference that tells a recycled id from the same state)
_loaded: dict[int, tuple[weakref.ref[WebState], int]] = {}

KbId = Annotated[str, PathParam(max_length=64, description="bulletin (MS06-040) or CVE")]


def operator_kb_path(settings: WebSettings) -> Path | None:
    """The operator's knowledge-base file of this server (None for an in-memory store)."""
    if str(settings.db) == ":memory:":
        return None
    return Path(settings.db).parent / OPERATOR_KB


def current_kb(request: Request) -> KnowledgeBase:
    """The server's knowledge base with the operator file merged over it, reloaded when the file
    changed since the last look."""
    with _write_lock:
        return current_kb_unlocked(request)


# -- TOML out (the stdlib reads TOML but does not write it; the schema is small and fixed) -------

def _toml_str(s: str) -> str:
    """A TOML basic string (TOML 1.0 "Strings"): quote, backslash and control characters escaped."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise bad("text is not valid Unicode (lone surrogate)") from None
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(_toml_str(x) for x in items) + "]"


def to_toml(vulns: list[Vuln]) -> str:
    """Entries as a ``--kb`` file (docs/kb.md)."""
    blocks = ["# Operator knowledge-base entries, written by the stormwatch API (PUT/POST /api/v1/kb).\n"
              "# Same format as any --kb file; `stormwatch kb check` validates it.\n"]
    for v in vulns:
        cvss = f", cvss = {float(v.severity.cvss)!r}" if v.severity.cvss is not None else ""
        mitigations = ", ".join(f"{{ action = {_toml_str(m.action)}, reason = {_toml_str(m.reason)} }}"
                                for m in v.mitigations)
        lines = ["[[vuln]]", f"id = {_toml_str(v.id)}", f"cves = {_toml_list(v.cves)}", f"name = {_toml_str(v.name)}",
                 f"published = {v.published.isoformat()}", f"ports = {_toml_list(v.ports)}",
                 f"services = {_toml_list(v.services)}", f"affected = {_toml_list(v.affected)}",
                 f"patch = {_toml_str(v.patch)}", f"severity = {{ rating = {_toml_str(v.severity.rating)}{cvss} }}",
                 f"mitigations = [{mitigations}]", f"references = {_toml_list(v.references)}"]
        lines += [f"{k} = {_toml_list(getattr(v, k))}" for k in ("exploits", "malware", "detectors") if getattr(v, k)]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _entry(body: KbEntryIn, source: str) -> Vuln:
    try:
        return parse_entry(body.model_dump(), source, 0)
    except KBError as exc:
        raise bad(str(exc)) from None


def _operator_file(request: Request) -> Path:
    path = operator_kb_path(get_settings(request))
    if path is None:
        raise HTTPException(409, "an in-memory store has no directory for the operator's knowledge base")
    return path


def _operator_entries(path: Path) -> list[Vuln]:
    return load_file(path) if path.exists() else []


# -- knowledge base ------------------------------------------------------------------------------

@router.get("/kb", response_model=KbListOut, responses=READ_ERRORS, dependencies=[Depends(read_guard)],
            tags=["knowledge base"])
def kb_list(request: Request) -> KbListOut:
    """Every entry: built in, from the server's --kb files, and the operator's (API) entries."""
    path = operator_kb_path(get_settings(request))
    return KbListOut(entries=[KbEntryOut.model_validate(v.as_dict()) for v in current_kb(request).values()],
                     operator_file=str(path) if path else None)


@router.get("/kb/{ident}", response_model=KbEntryOut, responses={**READ_ERRORS, **NOT_FOUND},
            dependencies=[Depends(read_guard)], tags=["knowledge base"])
def kb_show(request: Request, ident: KbId) -> KbEntryOut:
    v = current_kb(request).find(ident)
    if v is None:
        raise not_found(f"no knowledge-base entry for {ident!r}")
    return KbEntryOut.model_validate(v.as_dict())


@router.post("/kb", response_model=KbEntryOut, status_code=201, responses=WRITE_ERRORS,
             dependencies=[Depends(require_token), Depends(require_writable)], tags=["knowledge base"])
def kb_add(request: Request, body: KbEntryIn) -> KbEntryOut:
    """Add an operator entry; 409 when the id exists (use PUT to replace an entry)."""
    path = _operator_file(request)
    entry = _entry(body, str(path))
    with _write_lock:
        if entry.id in current_kb_unlocked(request):
            raise HTTPException(409, f"{entry.id} is already in the knowledge base; PUT /api/v1/kb/{entry.id} "
                                     "replaces it")
        _write_unlocked(request, path, [*_operator_entries(path), entry])
    return KbEntryOut.model_validate(entry.as_dict())


@router.put("/kb/{ident}", response_model=KbEntryOut, responses=WRITE_ERRORS,
            dependencies=[Depends(require_token), Depends(require_writable)], tags=["knowledge base"])
def kb_put(request: Request, ident: KbId, body: KbEntryIn) -> KbEntryOut:
    """Create or replace an operator entry (a built-in entry with the same id is replaced whole)."""
    if ident.strip().upper() != body.id.strip().upper():
        raise bad(f"the path names {ident!r} but the entry's id is {body.id!r}")
    path = _operator_file(request)
    entry = _entry(body, str(path))
    with _write_lock:
        entries = _operator_entries(path)
        i = next((i for i, v in enumerate(entries) if v.id == entry.id), None)
        if i is None:
            entries.append(entry)
        else:
            entries[i] = entry
        _write_unlocked(request, path, entries)
    return KbEntryOut.model_validate(entry.as_dict())


@router.delete("/kb/{ident}", response_model=DeletedOut, responses={**WRITE_ERRORS, **NOT_FOUND},
               dependencies=[Depends(require_token), Depends(require_writable)], tags=["knowledge base"])
def kb_delete(request: Request, ident: KbId) -> DeletedOut:
    """Remove an operator entry (built-in entries cannot be removed, only replaced)."""
    path = _operator_file(request)
    with _write_lock:
        entries = _operator_entries(path)
        keep = [v for v in entries if v.id != ident.strip().upper()]
        if len(keep) == len(entries):
            raise not_found(f"{ident!r} is not an operator entry")
        _write_unlocked(request, path, keep)
    return DeletedOut(deleted=True)


def current_kb_unlocked(request: Request) -> KnowledgeBase:
    """:func:`current_kb` for a caller that holds the write lock already."""
    st = get_state(request)
    path = operator_kb_path(st.settings)
    if path is None or path in st.settings.kb_paths:
        return st.kb
    stamp = path.stat().st_mtime_ns if path.exists() else 0
    ref, seen = _loaded.get(id(st), (None, 0))
    if ref is None or ref() is not st:
        seen = 0
    if seen != stamp:
        st.kb = load_kb((*st.settings.kb_paths, path) if stamp else st.settings.kb_paths)
    _loaded[id(st)] = (weakref.ref(st), stamp)
    return st.kb


def _write_unlocked(request: Request, path: Path, vulns: list[Vuln]) -> None:
    if not vulns:  # no operator entries left: no file (an empty one is not a valid --kb file)
        path.unlink(missing_ok=True)
        current_kb_unlocked(request)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(to_toml(vulns), encoding="utf-8")
        load_file(tmp)
        os.replace(tmp, path)
    except KBError as exc:
        raise bad(str(exc).replace(str(tmp), str(path))) from None
    except OSError as exc:
        raise HTTPException(503, f"cannot write the operator knowledge base {path}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    current_kb_unlocked(request)


# -- advisories ----------------------------------------------------------------------------------

Days = Annotated[int, Query(ge=1, le=365, description="days of observations before `at`")]


@router.get("/advisories", response_model=AdvisoriesOut, responses=READ_ERRORS, dependencies=[Depends(read_guard)],
            tags=["advisories"])
def advisories(request: Request, days: Days = DEFAULT_DAYS) -> AdvisoriesOut:
    """Vulnerabilities under active exploitation (an exploit attempt in the `days` before the
    latest event's hour)."""
    t = as_of(get_engine(request), None)
    kb = current_kb(request)
    rows = []
    for e in under_exploitation(get_engine(request), t, days):
        v = kb.find(e.vuln)
        rows.append(AdvisoryItemOut.model_validate({**e.as_dict(), "name": v.name if v else None,
                                                    "severity": v.severity.rating if v else None}))
    return AdvisoriesOut(at=t, days=days, advisories=rows)


ADVISORY_CONTENT: dict[int | str, dict[str, Any]] = {200: {"content": {"text/markdown": {"schema": {"type": "string"}},
                                      "text/html": {"schema": {"type": "string"}}},
                          "description": "the advisory as JSON (default), Markdown or HTML"}}


@router.get("/advisories/{vuln}", response_model=AdvisoryOut, dependencies=[Depends(read_guard)],
            responses={**READ_ERRORS, **NOT_FOUND, **ADVISORY_CONTENT}, tags=["advisories"])
def advisory(request: Request, vuln: KbId, days: Days = DEFAULT_DAYS,
             format_: Annotated[Literal["json", "markdown", "html"], Query(alias="format")] = "json"
             ) -> AdvisoryOut | Response:
    """The advisory for one vulnerability: the knowledge base joined with what was observed, the
    threat level and its reasons, and the recommended actions in order."""
    kb = current_kb(request)
    entry = kb.find(vuln)
    if entry is None:
        raise not_found(f"no knowledge-base entry for {vuln!r} (see /api/v1/kb)")
    store, engine = get_store(request), get_engine(request)
    rules = load_rules(get_settings(request).rules_path)
    t = as_of(engine, None)
    signals = gather_signals(engine, t, window=rules.window)
    level, reasons, source = level_in_force(store, signals, rules, kb)
    adv = build_advisory(engine, entry, t, kb=kb, signals=signals, level=level, level_reasons=reasons,
                         level_source=source, days=days)
    if format_ == "markdown":
        return Response(to_markdown(adv), media_type="text/markdown; charset=utf-8")
    if format_ == "html":
        from stormwatch.web.app import ADVISORY_CSP
        return Response(to_html(adv), media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": ADVISORY_CSP})
    return AdvisoryOut.model_validate(adv.as_dict())
