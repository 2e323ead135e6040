"""MkDocs hook: the benchmark figures in the site.

The benchmarks write their figures into `benchmarks/results/` (outside `docs/`), and the pages
link them by their place in the repository (`../../benchmarks/results/bench.png` from
`docs/benchmarks/`), so the links also work where the Markdown is read as files. This hook adds
those figures to the site under `_repo/` and points the pages' links at them. It reads local
files only (no network).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

FIGURES = "benchmarks/results"
SITE_FOLDER = "_repo"
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")


def on_files(files, config):
    root = Path(config.config_file_path).parent
    for figure in sorted((root / FIGURES).rglob("*.png")):
        uri = f"{SITE_FOLDER}/{figure.relative_to(root).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(figure)))
    return files


def on_page_markdown(markdown, page, config, files):
    page_folder = posixpath.dirname(page.file.src_uri)

    def redirect(match):
        target = match.group(2)
        in_repo = posixpath.normpath(posixpath.join("docs", page_folder, target))
        if not in_repo.startswith(FIGURES + "/"):
            return match.group(0)
        site_target = posixpath.relpath(f"{SITE_FOLDER}/{in_repo}", page_folder or ".")
        return match.group(1) + site_target + match.group(3)

    return LINK.sub(redirect, markdown)
