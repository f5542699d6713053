"""Build the Codalab submission zip: model.py at the root, the project modules it imports, data it reads.

The module list is not written by hand: a fresh interpreter imports `model` and every
loaded module whose file lies inside the project goes in, so the zip can never miss a
module or carry tests, datasets or results.

    python -m harness.submission --out dist/submission.zip
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from harness.dataset import atomic_write_bytes
from harness.errors import HarnessError

PROJECT_DIR = Path(__file__).resolve().parents[1]
# Files model.py reads at run time, beside the modules it imports.
DATA_FILES = ("meta_db.json", "portfolio/plans/*.json")

_LIST_IMPORTS = """
import json, sys
sys.path.insert(0, sys.argv[1])
import model
files = sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())})
print(json.dumps(files))
"""


def imported_project_files(root: Path = PROJECT_DIR) -> list[Path]:
    """Project files a fresh interpreter loads when it imports `model`."""
    done = subprocess.run(
        [sys.executable, "-c", _LIST_IMPORTS, str(root)], capture_output=True, text=True, cwd="/"
    )
    if done.returncode != 0:
        raise HarnessError(f"importing {root / 'model.py'} failed:\n{done.stderr[-2000:]}")
    files = (Path(f).resolve() for f in json.loads(done.stdout.strip().splitlines()[-1]) if f)
    return sorted(f for f in files if f.suffix == ".py" and _is_project_file(f, root))


def _is_project_file(path: Path, root: Path) -> bool:
    """Inside the project, but not in a virtual environment or hidden folder kept there."""
    if not path.is_relative_to(root):
        return False
    parts = path.relative_to(root).parts
    return not any(part.startswith(".") or part == "site-packages" for part in parts)


def submission_files(root: Path = PROJECT_DIR) -> list[Path]:
    """Everything the zip holds, as paths relative to the project root."""
    files = {f.relative_to(root) for f in imported_project_files(root)}
    for pattern in DATA_FILES:
        files.update(p.relative_to(root) for p in root.glob(pattern))
    if Path("model.py") not in files:
        raise HarnessError(f"{root / 'model.py'} was not among the imported files")
    return sorted(files)


def build_submission(out: str | Path, root: Path = PROJECT_DIR) -> list[Path]:
    """Write the zip (atomically) and return the relative paths it holds."""
    files = submission_files(root)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in files:
            archive.write(root / relative, relative.as_posix())
    atomic_write_bytes(Path(out), buffer.getvalue())
    return files


def main(argv: list[str] | None = None) -> int:
    """Command line: build the zip and list what it holds; 2 on a HarnessError."""
    parser = argparse.ArgumentParser(prog="python -m harness.submission", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="dist/submission.zip", help="zip to write (default: dist/submission.zip)")
    args = parser.parse_args(argv)
    try:
        files = build_submission(args.out)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    size_kib = Path(args.out).stat().st_size / 1024
    print(f"wrote {args.out}: {len(files)} files, {size_kib:.0f} KiB")
    for relative in files:
        print(f"  {relative.as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
