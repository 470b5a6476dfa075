"""``carrara-backend``: one verb per job an engineer or a script asks of the backend.

Verbs import their machinery lazily so that ``carrara-backend keys`` does not pay for torch, and paths named on
the command line are checked before torch loads, so a typo fails at once. Each verb that runs a job (``train``,
``extract``, ``prepare``) has its module here and calls the job's functions in ``backend/jobs``, as the server does.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...shared.jobs import (ARTIST_FACE_BUDGET, ENCODINGS, PREPARE_MAPPERS, PREPARE_MATCHERS, PRESET_INFO, PrepareConfig,
                           ReconstructConfig)
from ..server.quotas import GIB, Quotas


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carrara-backend", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=help, description=help,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    serve = verb("serve", "serve jobs to Blender over ZeroMQ")
    serve.add_argument("--bind", default="tcp://127.0.0.1:5555",
                       help="ZeroMQ endpoint; a non-loopback address needs --keys")
    serve.add_argument("--workspace", type=Path, default=Path("carrara-workspace"),
                       help="folder for jobs, uploads and checkpoints")
    serve.add_argument("--keys", type=Path, default=None,
                       help="folder made by 'carrara-backend keys': enables CURVE encryption and client keys")
    serve.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="where to compute; auto takes the GPU when torch sees one")
    serve.add_argument("--uploads-only", action="store_true",
                       help="train only on datasets uploaded over the connection, never on folders of this machine")
    serve.add_argument("--allow-root", type=Path, action="append", default=None, metavar="FOLDER",
                       help="a folder clients may name datasets in (repeat for more); without it, any folder")
    serve.add_argument("--shared-jobs", action="store_true",
                       help="every client sees every job; by default a client sees only the jobs its key submitted")
    serve.add_argument("--keep-days", type=float, default=Quotas.keep_days,
                       help="finished, failed and cancelled jobs, and unused uploads, are pruned after this many days")
    serve.add_argument("--max-queued-jobs", type=int, default=Quotas.queued_jobs, help="jobs that may wait their turn")
    serve.add_argument("--max-upload-gib", type=float, default=Quotas.store_bytes / GIB,
                       help="uploads the backend holds in all, in GiB")

    keys = verb("keys", "make CURVE key pairs for a remote backend and its clients")
    keys.add_argument("directory", type=Path, help="folder to write server.key(_secret) and client.key(_secret) into")

    train = verb("train", "train an SDF on a posed dataset and write a coloured mesh")
    train.add_argument("dataset", type=Path, help="COLMAP workspace/model folder or a transforms.json")
    train.add_argument("--out", type=Path, required=True, help="run folder (config, checkpoints, meshes)")
    train.add_argument("--preset", default=ReconstructConfig.preset,
                       help="; ".join(f"{info.name}: {info.description}" for info in PRESET_INFO))
    train.add_argument("--iters", type=int, default=None, help="explicit iteration count, overriding the preset")
    train.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="where to compute; auto takes the GPU when torch sees one")
    train.add_argument("--scene-type", choices=("object", "indoor", "outdoor"), default="object")
    train.add_argument("--encoding", choices=ENCODINGS, default="auto",
                       help="hash-grid implementation: auto takes the fastest here (tcnn where tinycudann imports "
                            "and there is a GPU, else triton on CUDA, else torch); with --resume, auto keeps the "
                            "run's own")
    train.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    train.add_argument("--gpus", type=int, default=1,
                       help="GPUs of this host to train on, one torchrun process each (rays split, gradients "
                            "averaged); with --device cpu, that many CPU processes over gloo, for testing")

    extract = verb("extract", "extract a coloured mesh from a run's checkpoint")
    extract.add_argument("run", type=Path, help="run folder written by 'train'")
    extract.add_argument("--resolution", type=int, default=512, help="cells across the bounding sphere")
    extract.add_argument("--out", type=Path, required=True, help="output .ply (or .glb, with a UV texture)")
    budget = extract.add_mutually_exclusive_group()
    budget.add_argument("--faces", type=int, default=ARTIST_FACE_BUDGET,
                        help="decimate the mesh to this many faces, a size Blender keeps interactive")
    budget.add_argument("--full", action="store_true",
                        help="keep every face marching cubes makes (millions at --resolution 1024 and above)")
    extract.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="where to compute; auto takes the GPU when torch sees one")
    extract.add_argument("--gpus", type=int, default=1,
                         help="GPUs of this host that share the surface's blocks from resolution 2048 on")

    prepare, defaults = verb("prepare", "Structure-from-Motion: photos or a video to an undistorted dataset for "
                                        "'train'"), PrepareConfig()
    prepare.add_argument("input", type=Path, help="a folder of photos (JPEG, PNG, TIFF), a video (MP4, MOV, "
                         "MKV), or a COLMAP model's folder (then only undistortion runs)")
    prepare.add_argument("--out", type=Path, required=True, help="dataset folder to write (images/ + sparse/0/)")
    prepare.add_argument("--matcher", choices=PREPARE_MATCHERS, default=defaults.matcher,
                         help="pairs to match: auto takes sequential for a video or many photos, else exhaustive")
    prepare.add_argument("--mapper", choices=PREPARE_MAPPERS, default=defaults.mapper)
    prepare.add_argument("--frames", type=int, default=defaults.frames, help="frames to take from a video")
    prepare.add_argument("--fps", type=float, default=None, help="frames per second of video, instead of --frames")
    prepare.add_argument("--max-side", type=int, default=defaults.max_side, help="longest image side in pixels")
    prepare.add_argument("--max-features", type=int, default=defaults.max_features, help="SIFT features per image")
    prepare.add_argument("--device", choices=("auto", "cuda", "cpu"), default=defaults.device,
                         help="where SIFT runs: auto takes the GPU when pycolmap has CUDA (pycolmap-cuda12)")
    return parser


def _missing_input(args: argparse.Namespace) -> str | None:
    """The first path the verb reads that does not exist, said before torch loads (seconds on a cold disk)."""
    for name in ("dataset", "run", "input"):
        path = getattr(args, name, None)
        if path is not None and not path.exists():
            return f"error: {name} {path} does not exist"
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    missing = _missing_input(args)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    if args.verb == "serve":
        from ..server.app import serve
        quotas = Quotas(store_bytes=int(args.max_upload_gib * GIB), queued_jobs=args.max_queued_jobs,
                        keep_days=args.keep_days)
        return serve(bind=args.bind, workspace=args.workspace, keys_dir=args.keys, device=args.device,
                     uploads_only=args.uploads_only, allowed_roots=args.allow_root, shared_jobs=args.shared_jobs,
                     quotas=quotas)
    if args.verb == "keys":
        from ..server.security import make_keys
        for path in make_keys(args.directory):
            print(path)
        return 0
    if args.verb == "train":
        from .launch import train_on_gpus
        return train_on_gpus(args, sys.argv[1:] if argv is None else list(argv))
    if args.verb == "extract":
        from .extract import extract_from_cli
        return extract_from_cli(args)
    if args.verb == "prepare":
        from .prepare import prepare_from_cli
        return prepare_from_cli(args)
    raise AssertionError(args.verb)

