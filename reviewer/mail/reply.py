"""Draft replies to a mailed series, in the list's interleaved style.

For each patch with new findings: the patch quoted with "> ", trimmed to the
hunks that carry findings ("[...]" where cut), each comment directly under the
quoted line it is about, threaded under the original (In-Reply-To,
References). The body comes from a jinja2 template (templates/reply.txt.j2,
replaceable with --template); headers are built here, encoded by Python's
email package.
"""

from __future__ import annotations

import email.policy
import email.utils
import mailbox
import os
import re
from dataclasses import dataclass, field
from email.message import EmailMessage

import jinja2

from reviewer.errors import UserError
from reviewer.findings import Finding
from reviewer.mail.series import MailPatch
from reviewer.report.render import environment, inert_value, wrap

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class QuotedLine:
    text: str  # the diff line as mailed (without the "> ")
    comments: list[Finding] = field(default_factory=list)


@dataclass
class Chunk:
    """A stretch of quoted lines, or a cut ("[...]") when lines is empty."""

    lines: list[QuotedLine]


def _diff_index(diff: str) -> list[tuple[str, int | None, str]]:
    """(file, new line number or None, text) for each line of a diff."""
    out: list[tuple[str, int | None, str]] = []
    file = ""
    new_no: int | None = None
    for text in diff.splitlines():
        if text.startswith("diff --git "):
            m = re.match(r"diff --git a/(.+?) b/(.+)$", text)
            file = m.group(2) if m else ""
            new_no = None
            out.append((file, None, text))
            continue
        m = _HUNK.match(text)
        if m:
            new_no = int(m.group(1))
            out.append((file, None, text))
            continue
        if new_no is not None and text[:1] in (" ", "+"):
            out.append((file, new_no, text))
            new_no += 1
        else:
            out.append((file, None, text))
    return out


def place(diff: str, findings: list[Finding], context: int = 6
          ) -> tuple[list[Chunk], list[Finding]]:
    """Quote the lines around each finding; return the chunks, and the findings
    that are not on a line of the diff (commented at the end)."""
    rows = _diff_index(diff)
    comments: dict[int, list[Finding]] = {}
    elsewhere: list[Finding] = []
    for f in findings:
        hit = next((i for i, (file, no, _) in enumerate(rows) if file == f.file and no == f.line),
                   None)
        if hit is None:
            elsewhere.append(f)
        else:
            comments.setdefault(hit, []).append(f)
    keep: set[int] = set()
    for i in comments:
        file = rows[i][0]
        header = next(j for j in range(i, -1, -1) if rows[j][2].startswith("diff --git "))
        hunk = next((j for j in range(i, header - 1, -1) if _HUNK.match(rows[j][2])), header)
        keep.update({header, hunk})
        keep.update(j for j in range(max(hunk, i - context), i + 1) if rows[j][0] == file)
    chunks: list[Chunk] = []
    cur: list[QuotedLine] = []
    for i, (_, _, text) in enumerate(rows):
        if i in keep:
            cur.append(QuotedLine(text, comments.get(i, [])))
        elif cur:
            chunks.append(Chunk(cur))
            chunks.append(Chunk([]))
            cur = []
    if cur:
        chunks.append(Chunk(cur))
    if chunks and chunks[-1].lines:
        chunks.append(Chunk([]))  # the rest of the patch is cut too
    return chunks, elsewhere


def clean_header(value: str) -> str:
    """No CR/LF or control characters from patch text in a header."""
    return " ".join(_CONTROL.sub(" ", value.replace("\r", " ").replace("\n", " ")).split())


def _env(template: str | None) -> tuple[jinja2.Environment, str]:
    if template is None:
        return environment(), "reply.txt.j2"
    if not os.path.isfile(template):
        raise UserError(f"--template {template}: no such file")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.dirname(os.path.abspath(template))),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
        lstrip_blocks=True, autoescape=False, finalize=inert_value,
    )
    env.filters["wrap"] = wrap
    return env, os.path.basename(template)


def draft(patch: MailPatch, findings: list[Finding], *, sender: str, template: str | None = None,
          date: str | None = None) -> EmailMessage:
    env, name = _env(template)
    env.filters["wrap"] = wrap
    chunks, elsewhere = place(patch.diff, findings)
    author_name = email.utils.parseaddr(patch.author)[0] or email.utils.parseaddr(patch.author)[1]
    try:
        body = env.get_template(name).render(
            patch=patch, author_name=author_name, chunks=chunks, elsewhere=elsewhere,
            findings=findings,
        )
    except jinja2.TemplateError as exc:
        raise UserError(f"reply template {name}: {exc}") from None
    return _message(patch, body, sender, date)


def _message(patch: MailPatch, body: str, sender: str, date: str | None) -> EmailMessage:
    msg = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))
    msg["From"] = clean_header(sender)
    msg["To"] = clean_header(patch.author)
    own = email.utils.parseaddr(sender)[1].lower()
    author = email.utils.parseaddr(patch.author)[1].lower()
    cc = [a for a in dict.fromkeys(patch.to + patch.cc)
          if email.utils.parseaddr(a)[1].lower() not in (own, author)]
    if cc:
        msg["Cc"] = ", ".join(clean_header(a) for a in cc)
    subject = clean_header(patch.subject)
    msg["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    msg["Date"] = date or email.utils.format_datetime(email.utils.localtime())
    msg["Message-ID"] = email.utils.make_msgid(domain="reviewer.local")
    if patch.message_id:
        msg["In-Reply-To"] = patch.message_id
        msg["References"] = " ".join([*patch.references, patch.message_id])
    msg.set_content(body, charset="utf-8", cte="8bit" if not body.isascii() else "7bit")
    return msg


def cover_draft(cover: MailPatch, body: str, *, sender: str, date: str | None = None
                ) -> EmailMessage:
    return _message(cover, body, sender, date)


def write_mbox(path: str, messages: list[EmailMessage]) -> None:
    if os.path.exists(path):
        raise UserError(f"{path}: exists; reviewer does not overwrite mail, choose a new name")
    box = mailbox.mbox(path, create=True)
    try:
        box.lock()
        for m in messages:
            box.add(m)
        box.flush()
    finally:
        box.unlock()
        box.close()


def write_eml_dir(path: str, messages: list[EmailMessage]) -> list[str]:
    os.makedirs(path, exist_ok=True)
    out = []
    for i, m in enumerate(messages, 1):
        name = os.path.join(path, f"{i:04d}-reply.eml")
        if os.path.exists(name):
            raise UserError(f"{name}: exists; reviewer does not overwrite mail")
        with open(name, "wb") as fh:
            fh.write(m.as_bytes())
        out.append(name)
    return out
