"""``analyze``: find, decode and emulate the shellcode in one payload, and say what it does.

Steps, each bounded by :class:`~.report.Limits`:

1. locate: NOP-equivalent sleds and GetPC stubs (:mod:`.locate`);
2. decode statically: interpret the stub at each GetPC (and a few bytes before it, where key and
   count set-up may sit) with the decoder-subset interpreter (:mod:`.decoders`);
3. emulate (unless ``Limits.emulate`` is False): from the decoder stub, the first GetPC, the end
   of the longest sleds, the statically decoded body, and offset 0, best first, until one run
   calls an API (at most ``Limits.max_runs`` runs); the run with the most API calls is reported;
4. read the results: API calls, bind ports, connect-backs, URLs, commands, the files the payload
   wrote; turn them into offers (:mod:`.offers`); strings of the decoded body add URLs and
   commands that the emulation could not reach (e.g. an API resolved in a way not modelled).
"""

from __future__ import annotations

import hashlib
import re

from stormwatch.detect.shellcode.decoders import StaticDecode, static_decode
from stormwatch.detect.shellcode.emulator import Emulation, emulate, infer_decoder
from stormwatch.detect.shellcode.locate import GetPC, Sled, find_getpc, find_sleds
from stormwatch.detect.shellcode.offers import URL_RE, dedupe, offer_from_url, offers_from_command
from stormwatch.detect.shellcode.report import Limits, Offer, ShellcodeReport, StopReason

SETUP_WINDOW = 24  # bytes before a GetPC where a decoder's key and count set-up may start
MAX_GETPC_TRIED = 6
_STRINGS_RE = re.compile(rb"[\x20-\x7e]{5,}")
_COMMAND_RE = re.compile(r"(?i)\b(?:cmd(?:\.exe)?\s+/[ck]\s+.+|echo\s+open\s+.+|tftp(?:\.exe)?\s+-i\s+.+)")


def analyze(data: bytes, *, limits: Limits | None = None) -> ShellcodeReport:
    """Analyse one payload (an exploit argument, a stream, or bare shellcode). Never raises for
    anything in ``data``; never runs it on the host CPU."""
    lim = limits or Limits()
    notes: list[str] = []
    view = bytes(data[: lim.max_input])
    if len(data) > lim.max_input:
        notes.append(f"only the first {lim.max_input} of {len(data)} bytes analysed")
    sleds = find_sleds(view)
    getpcs = find_getpc(view)
    static = _static(view, getpcs, sleds)
    runs: list[Emulation] = []
    if lim.emulate:
        for source, entry in _entries(view, static, getpcs, sleds)[: lim.max_runs]:
            run = emulate(source, entry, lim)
            runs.append(run)
            if run.api_calls:
                break
    best = max(runs, key=lambda r: len(r.api_calls), default=None)
    return _report(data, view, sleds, getpcs, static, runs, best, notes)


def _static(view: bytes, getpcs: list[GetPC], sleds: list[Sled]) -> StaticDecode | None:
    starts: list[int] = []
    for g in getpcs[:MAX_GETPC_TRIED]:
        starts += [g.start - k for k in range(SETUP_WINDOW + 1) if g.start - k >= 0]
    starts += [s.end for s in sleds[:2] if s.end < len(view)]
    tried: set[int] = set()
    for s in starts:
        if s in tried:
            continue
        tried.add(s)
        res = static_decode(view, s)
        if res is not None:
            return res
    return None


def _entries(view: bytes, static: StaticDecode | None, getpcs: list[GetPC], sleds: list[Sled]
             ) -> list[tuple[bytes, int]]:
    """(bytes, entry offset) to emulate, best first, without repeats."""
    cands: list[tuple[bytes, int]] = []
    if static is not None:
        cands.append((view, static.stub_offset))
    cands += [(view, g.start) for g in getpcs[:2]]
    cands += [(view, s.end) for s in sleds[:2] if s.end < len(view)]
    if static is not None:
        cands.append((static.data, static.decoded_offset))  # the body, in case the stub did not run
    cands.append((view, 0))
    out: list[tuple[bytes, int]] = []
    seen: set[tuple[int, int]] = set()
    for source, entry in cands:
        key = (id(source), entry)
        if key not in seen:
            seen.add(key)
            out.append((source, entry))
    return out


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _report(data: bytes, view: bytes, sleds: list[Sled], getpcs: list[GetPC], static: StaticDecode | None,
            runs: list[Emulation], best: Emulation | None, notes: list[str]) -> ShellcodeReport:
    decoder = key = None
    decoder_offset = decoded_offset = None
    decoded_size = 0
    body = b""
    if static is not None:
        decoder, key = static.decoder, static.key
        decoder_offset, decoded_offset, decoded_size = static.stub_offset, static.decoded_offset, static.decoded_size
        body = static.data[decoded_offset:decoded_offset + decoded_size]
    elif best is not None:
        inferred = infer_decoder(best, view)
        # Writes without a constant key are only a decoder when other evidence says shellcode:
        # random bytes run as code scribble over themselves too.
        if inferred is not None and inferred[1] is None and not (getpcs or best.api_calls):
            inferred = None
        if inferred is not None:
            decoder, key, decoder_offset, decoded_offset, decoded_size = inferred
            body = best.image[decoded_offset:decoded_offset + decoded_size]
    strings = tuple(s.decode("ascii") for s in _STRINGS_RE.findall(body or view)[:64]) if (body or best) else ()

    api_calls: list[tuple[str, str]] = []
    binds: list[int] = []
    connects: list[tuple[str, int]] = []
    urls: list[str] = []
    commands: list[str] = []
    offers: list[Offer] = []
    if best is not None:
        api_calls, binds, connects, commands = best.api_calls, best.binds, best.connects, best.commands
        for url, local in best.downloads:
            urls.append(url)
            o = offer_from_url(url, local)
            if o is not None:
                offers.append(o)
        for cmd in commands:
            offers += offers_from_command(cmd, best.files)
            urls += URL_RE.findall(cmd)
        for name, content in best.files.items():
            text = content.decode("latin-1")
            if "open" in text.lower() and "get" in text.lower():
                offers += offers_from_command(f"ftp -s:{name}", best.files)
    # The decoded body's own strings: URLs and command lines it carries, reached or not.
    if body:
        for s in _STRINGS_RE.findall(body):
            text = s.decode("ascii")
            for u in URL_RE.findall(text):
                urls.append(u)
                o = offer_from_url(u)
                if o is not None:
                    offers.append(o)
            if not commands and _COMMAND_RE.search(text):
                offers += offers_from_command(text)
                notes.append(f"command found in the decoded body, not seen run: {text[:120]!r}")

    # Found: a decoder, a GetPC stub, or code that called an API. A sled alone is filler (the
    # demo's bots send sleds around random bytes); it is reported but proves nothing.
    offset: int | None = None
    if decoder_offset is not None:
        offset = decoder_offset
    elif getpcs:
        offset = getpcs[0].start
    elif best is not None and best.api_calls:
        offset = best.entry
    found = offset is not None
    stop = best.stop_reason.value if best is not None else StopReason.NOT_EMULATED.value
    if best is None and runs == []:
        notes.append("not emulated")
    return ShellcodeReport(
        found=found, offset=offset, decoder=decoder, key=key, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest(),
        api_calls=tuple(api_calls), binds=tuple(dict.fromkeys(binds)), connects=tuple(dict.fromkeys(connects)),
        urls=_unique(urls), commands=_unique(commands), offers=tuple(dedupe(offers)),
        stop_reason=stop, instructions=sum(r.instructions for r in runs),
        stop_detail=best.stop_detail if best is not None else "",
        sled=(sleds[0].offset, sleds[0].length) if sleds else None,
        getpc=getpcs[0].technique if getpcs else None,
        decoder_offset=decoder_offset, decoded_offset=decoded_offset, decoded_size=decoded_size,
        decoded_sha256=hashlib.sha256(body).hexdigest() if body else None,
        strings=strings, notes=tuple(notes),
    )
