"""Review where reviewers work: a mailed series scanned like a range, reply
drafts, and b4's per-patch check protocol."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from email.message import EmailMessage
from typing import Any

from reviewer import __version__
from reviewer.errors import UserError
from reviewer.extract.cache import default_cache_dir
from reviewer.mail.reply import cover_draft, draft
from reviewer.mail.series import MailPatch, MailSeries, applied, parse_message, read_mbox
from reviewer.model import ApiModel
from reviewer.report.render import render
from reviewer.scan import ScanReport, scan
from reviewer.vcs.git import Repository, message_id_of


def fetch_msgid(msgid: str, dest: str) -> str:
    """The series for a message-id, as an mbox fetched by b4 (optional)."""
    b4 = shutil.which("b4")
    if b4 is None:
        raise UserError("--msgid needs b4 (pip install b4) and network access; or save the "
                        "series as an mbox and pass --mbox")
    out = os.path.join(dest, "series.mbox")
    r = subprocess.run([b4, "-q", "mbox", "-o", dest, "-n", "series.mbox", msgid],
                       capture_output=True, text=True, check=False, timeout=300)
    if r.returncode != 0 or not os.path.isfile(out):
        why = (r.stderr or r.stdout).strip().splitlines()
        raise UserError(f"b4 could not fetch {msgid}: {why[-1] if why else 'no output'}")
    return out


def scan_series(repo_path: str, mbox: str, *, base: str | None, cache_dir: str | None,
                model: ApiModel, **kw: Any) -> tuple[ScanReport, MailSeries]:
    return _scan_applied(repo_path, read_mbox(mbox), base, cache_dir, model, **kw)


def mail_of_commits(repo_path: str, report: ScanReport) -> dict[str, MailPatch]:
    """Patches rebuilt from commits (format-patch), threaded by their
    Message-ID/Link trailers when present."""
    out: dict[str, MailPatch] = {}
    repo = Repository(repo_path)
    for p in report.patches:
        raw = repo.patch_mail(p.commit.sha)
        mp = parse_message(raw) if raw else None
        if mp is not None:
            mp.message_id = p.message_id or message_id_of(p.commit.message)
            mp.references = []
            out[p.commit.sha] = mp
    return out


def user_identity(repo_path: str, explicit: str | None) -> str:
    if explicit:
        return explicit

    repo = Repository(repo_path)
    name, mail = repo.config("user.name"), repo.config("user.email")
    if not mail:
        raise UserError("no git user.email for the From: line; set it (git config user.email) "
                        "or pass --from 'Name <address>'")
    return f"{name} <{mail}>" if name else mail


def replies(report: ScanReport, mails: dict[str, MailPatch], cover: MailPatch | None, *,
            sender: str, template: str | None, with_cover: bool,
            doc: dict[str, Any]) -> list[EmailMessage]:
    msgs: list[EmailMessage] = []
    if with_cover and cover is not None:
        name = cover.author.split("<")[0].strip().strip('"') or cover.author
        body = render("reply-cover.txt.j2", cover=cover, author_name=name, doc=doc)
        msgs.append(cover_draft(cover, body, sender=sender))
    for p in report.patches:
        mp = mails.get(p.commit.sha)
        if mp is None or not p.new:
            continue
        msgs.append(draft(mp, p.new, sender=sender, template=template))
    return msgs


def b4_check(raw: bytes, repo_path: str, *, base: str | None, cache_dir: str | None,
             model: ApiModel, **kw: Any) -> list[dict[str, str]]:
    """b4's per-patch check protocol: a JSON list of {tool, status, summary,
    url, details}; [] when there is nothing to say (a cover letter)."""
    patch = parse_message(raw)
    if patch is None or patch.n == 0:
        return []
    try:
        report, _ = _scan_applied(repo_path, MailSeries(None, [patch]), base, cache_dir, model,
                                  **kw)
    except UserError as exc:
        return [{"tool": "reviewer", "status": "warn",
                 "summary": f"not reviewed: {exc}"[:200], "details": str(exc)}]
    p = report.patches[0]
    if not p.new:
        return [{"tool": "reviewer", "status": "pass",
                 "summary": f"no new threading findings ({len(p.fixed)} fixed)"}]
    worst = "fail" if any(f.severity == "error" for f in p.new) else "warn"
    details = "\n\n".join(
        f"{f.file}:{f.line}: {f.rule} {f.name}: {f.message}\n  fix: {f.fix}" for f in p.new)
    return [{
        "tool": "reviewer",
        "status": worst,
        "summary": f"{len(p.new)} new threading finding{'s' if len(p.new) != 1 else ''}: "
                   f"{p.worst.rule if p.worst else ''} {p.worst.name if p.worst else ''}".strip(),
        "details": details + f"\n\n(reviewer {__version__})",
    }]


def _scan_applied(repo_path: str, series: MailSeries, base: str | None, cache_dir: str | None,
                  model: ApiModel, **kw: Any) -> tuple[ScanReport, MailSeries]:
    """Apply a series in a scratch clone of the user's repository and scan it."""
    repo = Repository(repo_path)
    cache = cache_dir or default_cache_dir()
    key = hashlib.sha256(os.path.abspath(repo.git_dir).encode()).hexdigest()[:16]
    source = repo.root or repo.git_dir
    with applied(source, series, base or "HEAD", os.path.join(cache, "mail")) as (
            clone, base_sha, shas):
        report = scan(clone, f"{base_sha}..{shas[-1]}", cache_dir=cache, model=model,
                      scratch_key=key, source_root=repo.root, **kw)
    for p, mp in zip(report.patches, series.patches, strict=True):
        p.message_id = mp.message_id
    report.repo = source
    return report, series
