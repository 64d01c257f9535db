"""Build the installable Blender extension zip: ``python build_addon.py [--out DIR]``.

The zip holds, at its root: ``blender_manifest.toml``, the add-on package
(``fullbody_addon/*``), ``model_runtime/`` (with its built-in model assets and
IK weights; the add-on imports only its numpy-only modules, the subprocess
runs all of it) and ``requirements/{runtime,constraints}.txt`` for 'Set up
runtime'.  When Blender's own extension tool is importable (bpy installed),
the zip is checked with ``blender_ext validate``.
"""
from __future__ import annotations

import argparse
import fnmatch
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BUILTIN_ASSETS = ("body_builtin.npz", "face_builtin.npz")
EXCLUDE = ("__pycache__", "*.pyc", "*.pyo", "*.partial", "*.tmp", ".pytest_cache")


def _excluded(rel: Path) -> bool:
    return any(fnmatch.fnmatch(part, pat) for part in rel.parts for pat in EXCLUDE)


def zip_entries() -> list[tuple[Path, str]]:
    """``(source file, name in the zip)`` for everything shipped."""
    entries = [(ROOT / "blender_manifest.toml", "blender_manifest.toml")]
    for src_dir, prefix in ((ROOT / "fullbody_addon", ""), (ROOT / "model_runtime", "model_runtime/")):
        for f in sorted(src_dir.rglob("*")):
            rel = f.relative_to(src_dir)
            if f.is_file() and not _excluded(rel):
                entries.append((f, prefix + rel.as_posix()))
    for name in ("runtime.txt", "constraints.txt"):
        entries.append((ROOT / "requirements" / name, f"requirements/{name}"))
    lic = ROOT / "LICENSE"
    if lic.is_file():
        entries.append((lic, "LICENSE"))
    return entries


def build(out_dir: Path) -> Path:
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for src, name in zip_entries():
            if not src.is_file():
                raise FileNotFoundError(f"{src} is missing; cannot build the extension")
            z.write(src, name)
    tmp.replace(out)
    return out


def blender_ext_tool() -> Path | None:
    """Blender's ``blender_ext.py`` from an installed bpy (None when bpy is absent)."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        hits = sorted(Path(base).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return hits[-1]
    return None


def validate(zip_path: Path) -> None:
    tool = blender_ext_tool()
    if tool is None:
        print("bpy not installed: skipped 'blender_ext validate'")
        return
    r = subprocess.run([sys.executable, str(tool), "validate", str(zip_path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"extension validation failed:\n{r.stdout}{r.stderr}")
    print(r.stdout.strip() or "valid")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    p.add_argument("--no-validate", action="store_true")
    args = p.parse_args(argv)
    path = build(args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    missing = [a for a in BUILTIN_ASSETS if not (ROOT / "model_runtime" / "assets" / a).is_file()]
    if missing:
        print(f"warning: built-in assets not built yet, not in the zip: {', '.join(missing)} "
              "(run tools/build_builtin_assets.py)", file=sys.stderr)
    if not args.no_validate:
        validate(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
