"""Documents to train on: the default corpus built from Debian packages, or a folder of text.

The default corpus is fetched once with `apt-get download` (no system-wide install) and
unpacked with `dpkg -x` into `<cache>/corpus/debian-v<N>/`:

    python-doc/**.rst.txt   reStructuredText sources of the Python documentation (python3.X-doc)
    kjv/bible.txt           the King James Bible, one verse a line (bible-kjv-text)
    jargon/jargon.txt       the Jargon File 4.4.7 (jargon-text)
    licences/<package>      the packages' copyright files
    manifest.json           package names, versions and licences
    .complete               written last; without it the folder is rebuilt
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from warmup_jax.data import debian_texts
from warmup_jax.data._cache import file_lock, short_hash, write_json_atomic

DEBIAN_CORPUS_FORMAT = 1  # bump when the extracted layout or the document split changes
PREFERRED_PYTHON_DOC = "python3.11-doc"
BIBLE_PACKAGE = "bible-kjv-text"
JARGON_PACKAGE = "jargon-text"
LICENCES = {
    "python-doc": "PSF License Agreement (Python documentation; its code examples: Zero-Clause BSD)",
    BIBLE_PACKAGE: "public domain (King James Version, 1611; Crown rights apply in the UK only)",
    JARGON_PACKAGE: "public domain (the Jargon File 4.4.7, Eric S. Raymond et al.)",
}
TEXT_SUFFIXES = (".txt", ".md", ".rst")
log = logging.getLogger(__name__)
USE_A_FOLDER_HINT = (
    "To train on any folder of text files instead, run the trainer with "
    "`--set data.source=text_dir --set data.path=/some/folder`."
)


class CorpusError(RuntimeError):
    """The training text cannot be found or fetched; the message says what to do instead."""


@dataclasses.dataclass(frozen=True)
class Document:
    doc_id: str  # unique and stable within its corpus (used to assign the split)
    text: str
    source: str  # the package or folder it came from


# ----------------------------------------------------------------------------- Debian corpus


def debian_corpus(cache_dir: Path) -> Path:
    """The extracted default corpus, fetched with apt on first use."""
    root = Path(cache_dir) / "corpus" / f"debian-v{DEBIAN_CORPUS_FORMAT}"
    if (root / ".complete").exists():
        return root
    with file_lock(Path(cache_dir) / "locks" / "debian-corpus.lock"):
        if not (root / ".complete").exists():
            log.info("fetching the default corpus with apt-get download into %s (once)", root)
            _build_debian_corpus(root)
    return root


def debian_fingerprint(root: Path) -> str:
    return short_hash([DEBIAN_CORPUS_FORMAT, (root / "manifest.json").read_text()])


def iter_debian_documents(root: Path) -> Iterator[Document]:
    """Python docs (one document per .rst file), Bible chapters, Jargon File entries."""
    doc_dir = root / "python-doc"
    doc_source = (root / "python-doc.package").read_text().strip()
    for path in sorted(doc_dir.rglob("*.rst.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            yield Document(f"python-doc/{path.relative_to(doc_dir)}", text, doc_source)
    bible = (root / "kjv" / "bible.txt").read_text(encoding="utf-8")
    for doc_id, text in debian_texts.bible_chapters(bible):
        yield Document(f"kjv/{doc_id}", text, BIBLE_PACKAGE)
    jargon = (root / "jargon" / "jargon.txt").read_text(encoding="utf-8")
    for doc_id, text in debian_texts.jargon_entries(jargon):
        yield Document(f"jargon/{doc_id}", text, JARGON_PACKAGE)


def _build_debian_corpus(root: Path) -> None:
    for tool in ("apt-get", "apt-cache", "dpkg", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise CorpusError(
                f"the default corpus is fetched with apt, but `{tool}` is not installed here. " + USE_A_FOLDER_HINT
            )
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".fetch-") as tmp:
        tmp = Path(tmp)
        debs = _apt_download(tmp / "debs")
        staging = tmp / "corpus"
        packages = [_unpack(deb, tmp / "unpacked", staging) for deb in debs]
        write_json_atomic(staging / "manifest.json", {"format": DEBIAN_CORPUS_FORMAT, "packages": packages})
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)
    (root / ".complete").write_text("ok\n")


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _apt_knows(package: str) -> bool:
    shown = _run(["apt-cache", "show", "--no-all-versions", package])
    return shown.returncode == 0 and "Package:" in shown.stdout


def _python_doc_package() -> str | None:
    """python3.11-doc if apt has it, else the python3.X-doc that `python3-doc` depends on."""
    if _apt_knows(PREFERRED_PYTHON_DOC):
        return PREFERRED_PYTHON_DOC
    depends = _run(["apt-cache", "depends", "python3-doc"]).stdout
    match = re.search(r"Depends:\s*(python3\.\d+-doc)\b", depends)
    return match.group(1) if match and _apt_knows(match.group(1)) else None


def _apt_download(dest: Path) -> list[Path]:
    """Downloads the three .deb files into `dest`; runs `apt-get update` once if needed (root)."""
    dest.mkdir(parents=True)
    problem = ""
    for attempt in range(2):
        doc_package = _python_doc_package()
        wanted = [doc_package or "python3.X-doc", BIBLE_PACKAGE, JARGON_PACKAGE]
        unknown = [p for p in wanted[1:] if not _apt_knows(p)] + ([] if doc_package else [wanted[0]])
        if unknown:
            problem = f"apt does not know the package(s) {', '.join(unknown)}"
        else:
            result = _run(["apt-get", "download", *wanted], cwd=dest)
            if result.returncode == 0:
                return sorted(dest.glob("*.deb"))
            problem = "`apt-get download` failed: " + _tail(result.stderr or result.stdout)
        if attempt == 0 and os.geteuid() == 0:
            update = _run(["apt-get", "update"])
            if update.returncode != 0:
                problem += "; `apt-get update` failed: " + _tail(update.stderr)
                break
        else:
            break
    advice = "" if os.geteuid() == 0 else " (as root, `apt-get update` may fix this)"
    raise CorpusError(f"could not fetch the default corpus: {problem}{advice}. " + USE_A_FOLDER_HINT)


def _tail(text: str, lines: int = 4) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _unpack(deb: Path, unpack_root: Path, staging: Path) -> dict:
    """Extracts one .deb and copies its text into `staging`; returns its manifest entry."""
    fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"]).stdout
    info = dict(line.split(": ", 1) for line in fields.strip().splitlines())
    name, version = info["Package"], info["Version"]
    tree = unpack_root / name
    tree.mkdir(parents=True)
    extracted = _run(["dpkg", "-x", str(deb), str(tree)])
    if extracted.returncode != 0:
        raise CorpusError(f"`dpkg -x {deb.name}` failed: {_tail(extracted.stderr)}. " + USE_A_FOLDER_HINT)
    if name == BIBLE_PACKAGE:
        text = debian_texts.decode_brs_bible((tree / "usr/lib/bible.data").read_bytes())
        _write(staging / "kjv" / "bible.txt", text.encode("utf-8"))
        licence = LICENCES[name]
    elif name == JARGON_PACKAGE:
        _write(
            staging / "jargon" / "jargon.txt",
            gzip.decompress((tree / "usr/share/doc/jargon-text/jargon.txt.gz").read_bytes()),
        )
        licence = LICENCES[name]
    else:
        _copy_rst_sources(tree, staging / "python-doc")
        (staging / "python-doc.package").write_text(name + "\n")
        licence = LICENCES["python-doc"]
    copyright_file = tree / "usr/share/doc" / name / "copyright"
    if copyright_file.exists():
        _write(staging / "licences" / name, copyright_file.read_bytes())
    return {"package": name, "version": version, "licence": licence}


def _copy_rst_sources(tree: Path, out_dir: Path) -> None:
    sources = sorted(tree.glob("usr/share/doc/python3*/html/_sources"))
    if not sources:
        raise CorpusError("the Python documentation package has no html/_sources folder. " + USE_A_FOLDER_HINT)
    for path in sorted(sources[0].rglob("*.rst.txt*")):
        rel = str(path.relative_to(sources[0]))
        data = path.read_bytes()
        if rel.endswith(".gz"):
            rel, data = rel[:-3], gzip.decompress(data)
        if rel.endswith(".rst.txt"):
            _write(out_dir / rel, data)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# ----------------------------------------------------------------------------- text folders


def text_dir_files(folder: str | os.PathLike) -> list[Path]:
    """The .txt/.md/.rst files under `folder` (recursive, sorted); errors if there are none."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise CorpusError(
            f"data.path={str(folder)!r} is not a folder; data.source='text_dir' needs a folder "
            f"of {'/'.join(TEXT_SUFFIXES)} files (searched recursively)"
        )
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise CorpusError(f"no {'/'.join(TEXT_SUFFIXES)} files under {str(root)!r} (data.path)")
    return files


def text_dir_fingerprint(folder: str | os.PathLike) -> str:
    """Changes whenever a file is added, removed, resized or touched."""
    root = Path(folder).expanduser().resolve()
    stats = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in text_dir_files(root)]
    return short_hash([str(root), stats])


def iter_text_dir_documents(folder: str | os.PathLike) -> Iterator[Document]:
    """One document per non-empty file, read as UTF-8 (bad bytes replaced)."""
    root = Path(folder).expanduser().resolve()
    for path in text_dir_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            yield Document(str(path.relative_to(root)), text, str(root))
