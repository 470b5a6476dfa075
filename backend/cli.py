"""``carrara-backend``: one verb per job an engineer or a script asks of the backend.

Verbs import their machinery lazily so that ``carrara-backend keys`` does not pay for torch.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carrara-backend", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    serve = verbs.add_parser("serve", help="serve jobs to Blender over ZeroMQ")
    serve.add_argument("--bind", default="tcp://127.0.0.1:5555",
                       help="ZeroMQ endpoint; a non-loopback address needs --keys")
    serve.add_argument("--workspace", type=Path, default=Path("carrara-workspace"),
                       help="folder for jobs, uploads and checkpoints")
    serve.add_argument("--keys", type=Path, default=None,
                       help="folder made by 'carrara-backend keys': enables CURVE encryption and client keys")
    serve.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    serve.add_argument("--uploads-only", action="store_true",
                       help="train only on datasets uploaded over the connection, never on folders of this machine")

    keys = verbs.add_parser("keys", help="make CURVE key pairs for a remote backend and its clients")
    keys.add_argument("directory", type=Path, help="folder to write server.key(_secret) and client.key(_secret) into")

    train = verbs.add_parser("train", help="train an SDF on a posed dataset and write a coloured mesh")
    train.add_argument("dataset", type=Path, help="COLMAP workspace/model folder or a transforms.json")
    train.add_argument("--out", type=Path, required=True, help="run folder (config, checkpoints, meshes)")
    train.add_argument("--preset", default="standard", help="preview, standard, high (or ci for tests)")
    train.add_argument("--iters", type=int, default=None, help="explicit iteration count, overriding the preset")
    train.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    train.add_argument("--scene-type", choices=("object", "indoor", "outdoor"), default="object")
    train.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")

    extract = verbs.add_parser("extract", help="extract a coloured mesh from a run's checkpoint")
    extract.add_argument("run", type=Path, help="run folder written by 'train'")
    extract.add_argument("--resolution", type=int, default=512, help="cells across the bounding sphere")
    extract.add_argument("--out", type=Path, required=True, help="output .ply (or .glb)")
    extract.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.verb == "serve":
        from .server.app import serve
        return serve(bind=args.bind, workspace=args.workspace, keys_dir=args.keys, device=args.device,
                     uploads_only=args.uploads_only)
    if args.verb == "keys":
        from .server.security import make_keys
        for path in make_keys(args.directory):
            print(path)
        return 0
    if args.verb == "train":
        from .train.run import train_from_cli
        return train_from_cli(args)
    if args.verb == "extract":
        from .train.run import extract_from_cli
        return extract_from_cli(args)
    raise AssertionError(args.verb)


if __name__ == "__main__":
    sys.exit(main())
