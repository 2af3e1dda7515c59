"""Series as mailed: read an mbox, find the cover letter and the patches in
order, apply them with `git am` in a scratch clone, and map commits back to
messages.

The scratch clone (`git clone --shared --no-checkout`) borrows the user's
objects read-only and writes only into itself; it is removed afterwards. The
user's repository, index, refs, config and work tree are never touched.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import mailbox
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage

from reviewer.errors import UserError

_SUBJECT = re.compile(
    r"^\s*(?:(?:re|fwd?|aw)\s*:\s*)*\[(?P<tags>[^\]]*)\]\s*(?P<title>.*)$", re.I | re.S)
_COUNTER = re.compile(r"(?P<n>\d+)\s*/\s*(?P<m>\d+)")
_REPLY = re.compile(r"^\s*(re|aw|fwd?)\s*:", re.I)


@dataclass
class MailPatch:
    n: int  # position in the series (1-based; 0 for the cover letter)
    m: int  # series length
    subject: str  # as mailed
    title: str  # without the [PATCH n/m] prefix
    message_id: str
    references: list[str]
    author: str  # "Name <email>"
    date: str
    to: list[str]
    cc: list[str]
    body: str  # the text part, with the diff
    raw: bytes  # the message as read

    @property
    def diff(self) -> str:
        i = self.body.find("\ndiff --git ")
        return self.body[i + 1:] if i >= 0 else ""


@dataclass
class MailSeries:
    cover: MailPatch | None
    patches: list[MailPatch]
    skipped: list[str] = field(default_factory=list)  # messages that are not patches


def _text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def _header(msg: EmailMessage, name: str, default: str = "") -> str:
    """A header's decoded value; a value Python's parser refuses (an encoded
    newline in an address) is decoded without it, never an exception."""
    try:
        return str(msg.get(name, default))
    except Exception:
        pass
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            try:
                text = str(email.header.make_header(email.header.decode_header(str(value))))
            except Exception:
                text = str(value)
            text = " ".join(text.split())
            m = re.search(r"<([^<>\s]+@[^<>\s]+)>\s*$", text)
            if name.lower() in ("from", "to", "cc") and m:
                # One address, its name defused: no group, list or address syntax.
                display = re.sub(r'[:;,<>"\\@]', " ", text[: m.start()])
                display = " ".join(display.split())
                try:
                    return email.utils.formataddr((display, m.group(1)))
                except (UnicodeError, ValueError):
                    # Bytes that are not text (surrogates from a non-UTF-8
                    # header): replacement characters, never an exception.
                    text = display.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    return f"{text} <{m.group(1)}>".strip()
            return text
    return default


def _addresses(value: object) -> list[str]:
    if not value:
        return []
    pairs = email.utils.getaddresses([str(value)])
    return [email.utils.formataddr(pair) for pair in pairs if pair[1]]


def _msgid(value: object) -> str:
    text = str(value or "").strip()
    m = re.search(r"<[^<>]+>", text)
    return m.group(0) if m else (f"<{text}>" if text else "")


def parse_message(raw: bytes) -> MailPatch | None:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    subject = " ".join(_header(msg, "Subject").split())
    m = _SUBJECT.match(subject)
    if _REPLY.match(subject) or m is None or "patch" not in m.group("tags").lower():
        return None
    counter = _COUNTER.search(m.group("tags"))
    n, total = (int(counter.group("n")), int(counter.group("m"))) if counter else (1, 1)
    body = _text(msg)
    if n > 0 and "\ndiff --git " not in "\n" + body:
        return None
    refs = [_msgid(x) for x in _header(msg, "References").split() if x.strip()]
    irt = _msgid(_header(msg, "In-Reply-To"))
    if irt and irt not in refs:
        refs.append(irt)
    return MailPatch(
        n=n, m=total, subject=subject, title=m.group("title").strip(),
        message_id=_msgid(_header(msg, "Message-ID")), references=refs,
        author=_header(msg, "From"), date=_header(msg, "Date"),
        to=_addresses(_header(msg, "To")), cc=_addresses(_header(msg, "Cc")), body=body, raw=raw,
    )


def read_mbox(path: str) -> MailSeries:
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file (give an mbox of the series)")
    with open(path, "rb") as fh:
        head = fh.read(5)
    if not head:
        raise UserError(f"{path}: empty file; save the series as an mbox first")
    raws: list[bytes] = []
    if head.startswith(b"From "):
        box = mailbox.mbox(path, create=False)
        try:
            for key in box.iterkeys():
                raws.append(box.get_bytes(key))
        finally:
            box.close()
    else:  # a single message (.eml / git format-patch output)
        with open(path, "rb") as fh:
            raws.append(fh.read())
    cover = None
    patches: dict[int, MailPatch] = {}
    skipped: list[str] = []
    for raw in raws:
        p = parse_message(raw)
        if p is None:
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            skipped.append(" ".join(_header(msg, "Subject", "(no subject)").split()))
            continue
        if p.n == 0:
            cover = p
        elif p.n in patches:
            if patches[p.n].message_id != p.message_id:
                skipped.append(f"{p.subject} (another copy of patch {p.n}; the first is used)")
        else:
            patches[p.n] = p
    if not patches:
        raise UserError(f"{path}: no patches found (expected [PATCH n/m] messages with diffs)")
    ordered = [patches[k] for k in sorted(patches)]
    total = max(p.m for p in ordered)
    missing = [k for k in range(1, total + 1) if k not in patches]
    if missing:
        raise UserError(
            f"{path}: patch{'es' if len(missing) > 1 else ''} "
            f"{', '.join(f'{k}/{total}' for k in missing)} missing from the mbox; "
            "fetch the whole series (b4 am) and try again"
        )
    return MailSeries(cover, ordered, skipped)


_DATE_LINE = re.compile(rb"^Date:[^\n]*\n(?:[ \t][^\n]*\n)*", re.M | re.I)


def _am_input(raw: bytes) -> bytes:
    """The message for git am: a Date git cannot read (it refuses the patch)
    is replaced by a neutral one; the reply still quotes the date as mailed."""
    head, sep, rest = raw.partition(b"\n\n")
    m = _DATE_LINE.search(head + b"\n")
    if m is None:
        return raw
    value = m.group(0)[5:].decode("utf-8", "replace").strip()
    try:
        if email.utils.parsedate_to_datetime(value) is not None:
            return raw
    except (TypeError, ValueError, IndexError):
        pass
    fixed = (head + b"\n")[: m.start()] + b"Date: Thu, 01 Jan 1970 00:00:00 +0000\n" + (
        head + b"\n")[m.end():]
    return fixed.rstrip(b"\n") + sep + rest


def _remove_orphans(scratch_base: str) -> None:
    """Scratch clones left by a reviewer that was killed (SIGKILL cannot be
    cleaned up after): their directory names carry the owner's pid."""
    for name in os.listdir(scratch_base):
        m = re.match(r"am-(\d+)-", name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(scratch_base, name), ignore_errors=True)
        except (PermissionError, OverflowError, ValueError):
            continue


@contextmanager
def applied(repo_root: str, series: MailSeries, base: str, scratch_base: str) -> Iterator[
        tuple[str, str, list[str]]]:
    """Apply a series in a scratch clone; yield (clone path, base sha, commit shas)."""
    os.makedirs(scratch_base, exist_ok=True)
    _remove_orphans(scratch_base)
    clone = tempfile.mkdtemp(prefix=f"am-{os.getpid()}-", dir=scratch_base)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "HOME": clone, "GIT_COMMITTER_NAME": "reviewer",
                "GIT_COMMITTER_EMAIL": "reviewer@localhost"})

    def git(*args: str, cwd: str = clone, data: bytes | None = None) -> str:
        proc = subprocess.Popen(["git", *args], cwd=cwd, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(data)
        except BaseException:
            # Ctrl-C: subprocess.run would wait only 0.25 s for git, which could
            # still be writing into the clone while it is removed.
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, args, out, err)
        return out.decode("utf-8", "replace").strip()

    try:
        try:
            base_sha = git("rev-parse", "--verify", f"{base}^{{commit}}", cwd=repo_root)
        except subprocess.CalledProcessError:
            raise UserError(f"--base {base}: unknown revision") from None
        git("clone", "-q", "--shared", "--no-checkout", repo_root, clone, cwd=scratch_base)
        git("checkout", "-q", "--detach", base_sha)
        shas: list[str] = []
        for p in series.patches:
            try:
                git("am", "-q", "--keep-cr", "--committer-date-is-author-date",
                    data=_am_input(p.raw))
            except subprocess.CalledProcessError as exc:
                why = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
                reason = next((w for w in why if w.startswith(("error:", "fatal:"))),
                              why[0] if why else "git am failed")
                raise UserError(
                    f"patch {p.n}/{p.m} '{p.title}' does not apply on {base}: {reason} "
                    "(pass --base with the commit the series is based on)") from None
            shas.append(git("rev-parse", "HEAD"))
        yield clone, base_sha, shas
    finally:
        shutil.rmtree(clone, ignore_errors=True)
