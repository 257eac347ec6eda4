"""What each image of deploy/Dockerfile holds: its code and the artefacts `make setup`
makes that its services need at run time. The one list of it: the Dockerfile lays each
image's /app with this script, and tests/test_image.py lays the same files into a
temporary folder and starts the services from there.

    python deploy/image_files.py lay IMAGE SOURCE DEST [--link]   # copy IMAGE's files
    python deploy/image_files.py list IMAGE                       # print them

`lay` fails (exit 1, one line naming what is missing) when an artefact or a code path is
not in SOURCE: an image without the knowledge index would build but never serve.
`--link` symlinks the artefacts instead of copying them (the test: the models are
hundreds of MB; the code is always copied, so the services find their root in DEST).
Standard library only: it runs in both build stages (Python 3.11 and 3.10).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple

# Never copied from a code folder: caches and the folders' own tests.
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", ".pytest_cache")


class Image(NamedTuple):
    code: List[str]  # files and folders (ending in /) of the repository, copied as they are
    artefacts: List[str]  # what the build makes (`make setup`'s steps); "models/*.tar.gz": the newest


IMAGES: Dict[str, Image] = {
    # `python -m generator`: the OpenAI-compatible chat and embeddings service.
    "generator": Image(
        code=["generator/"],
        # The embeddings model comes with its pip package (requirements/generator.txt).
        artefacts=["models/generator/"],  # the chat model's safetensors cache (generator.convert)
    ),
    # Rasa, the action server, the exporter, the operator tools, the bank's migrations and
    # the agent console: one image, one command each (deploy/docker-compose.yml).
    "assistant": Image(
        code=[
            "config.yml", "endpoints.yml", "credentials.yml", "domain/", "data/", "knowledge/",
            "assistant/", "actions/", "addons/", "ops/", "console/",
            "deploy/endpoints.yml", "deploy/run-rasa.sh",
        ],
        artefacts=[
            "models/embeddings/",  # the NLU's ONNX sentence encoder (generator.export_onnx)
            "build/knowledge/index.npz",  # the knowledge index (assistant.knowledge build)
            "models/*.tar.gz",  # the trained Rasa model (rasa train)
        ],
    ),
}


class LayoutError(RuntimeError):
    pass


def _artefact_sources(source: Path, artefact: str) -> List[Path]:
    if "*" in artefact:
        found = sorted(source.glob(artefact), key=lambda p: p.stat().st_mtime)
        return found[-1:]  # the newest, as Rasa loads the newest model in models/
    path = source / artefact.rstrip("/")
    return [path] if path.exists() else []


def lay(image: str, source: Path, dest: Path, link: bool = False) -> List[Path]:
    """Copy `image`'s code and artefacts from `source` into `dest`; the paths laid."""
    if image not in IMAGES:
        raise LayoutError(f"no image {image!r} (images: {', '.join(IMAGES)})")
    spec = IMAGES[image]
    missing = [c for c in spec.code if not (source / c.rstrip("/")).exists()]
    artefacts = {a: _artefact_sources(source, a) for a in spec.artefacts}
    missing += [a for a, found in artefacts.items() if not found]
    if missing:
        raise LayoutError(f"image {image}: missing in {source}: {', '.join(missing)} "
                          "(the build steps of `make setup` make the artefacts)")
    laid: List[Path] = []
    for item in spec.code:
        src, out = source / item.rstrip("/"), dest / item.rstrip("/")
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, ignore=IGNORE, dirs_exist_ok=True)
        else:
            shutil.copy2(src, out)
        laid.append(out)
    for found in artefacts.values():
        for src in found:
            out = dest / src.relative_to(source)
            out.parent.mkdir(parents=True, exist_ok=True)
            if link:
                os.symlink(src.resolve(), out, target_is_directory=src.is_dir())
            elif src.is_dir():
                shutil.copytree(src, out, dirs_exist_ok=True)
            else:
                shutil.copy2(src, out)
            laid.append(out)
    return laid


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/image_files.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    lay_cmd = commands.add_parser("lay", help="copy an image's files from SOURCE into DEST")
    lay_cmd.add_argument("image", choices=sorted(IMAGES))
    lay_cmd.add_argument("source", type=Path)
    lay_cmd.add_argument("dest", type=Path)
    lay_cmd.add_argument("--link", action="store_true", help="symlink the artefacts (tests)")
    list_cmd = commands.add_parser("list", help="print an image's code and artefacts")
    list_cmd.add_argument("image", choices=sorted(IMAGES))
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(IMAGES[args.image].code + IMAGES[args.image].artefacts))
        return 0
    try:
        laid = lay(args.image, args.source, args.dest, link=args.link)
    except (LayoutError, OSError) as error:
        print(f"image files: {error}", file=sys.stderr)
        return 1
    print(f"image {args.image}: {len(laid)} paths laid in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
