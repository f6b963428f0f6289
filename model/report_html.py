"""report.html: the evaluation report's Markdown as one self-contained HTML file.

Every image the Markdown references is embedded as a base64 data URI and the stylesheet is inline, so the
file opens anywhere on its own (sent by mail, attached to a ticket): no other file, script, font or stylesheet.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from pathlib import Path
from urllib.parse import unquote, urlsplit

from markdown_it import MarkdownIt

from .errors import StudyError

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; line-height: 1.45; color: #1a1a1a;
       max-width: 80em; margin: 2em auto; padding: 0 1.5em; }
h1, h2, h3 { line-height: 1.2; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
@media print { img, tr { break-inside: avoid; } }
"""


def write_html_report(markdown: str, run_dir: Path, title: str | None = None) -> Path:
    """Render `markdown` into `run_dir/report.html`, its images (paths relative to `run_dir`) embedded.

    `title` defaults to the Markdown's first heading. Raises StudyError naming an image that is missing,
    or one that is not a local image file (a remote one would make the file depend on the network)."""
    run_dir = Path(run_dir)
    # html=False: raw HTML in the Markdown (a stray "<" in a table cell) is escaped, never passed through
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    for i, token in enumerate(tokens):
        if title is None and token.type == "heading_open" and i + 1 < len(tokens):
            title = tokens[i + 1].content
        for child in token.children or ():
            if child.type == "image":
                child.attrSet("src", _data_uri(run_dir, str(child.attrGet("src") or "")))
    body = md.renderer.render(tokens, md.options, {})
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title or 'report')}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def _data_uri(run_dir: Path, src: str) -> str:
    if src.startswith("data:"):
        return src
    parts = urlsplit(src)
    if parts.scheme or parts.netloc:
        raise StudyError(f"report image {src!r} is not a file in the run folder: report.html embeds local images only")
    path = run_dir / unquote(parts.path)  # markdown-it percent-encodes the link it parsed
    if not path.is_file():
        raise StudyError(f"report image {path.name} is missing: {path} does not exist (evaluate the run again)")
    mime = mimetypes.guess_type(path.name)[0]
    if mime is None or not mime.startswith("image/"):
        raise StudyError(f"report image {path.name} is not an image file (type {mime or 'unknown'})")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
