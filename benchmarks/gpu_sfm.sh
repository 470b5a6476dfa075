#!/usr/bin/env bash
# The Structure-from-Motion benchmark on the GPU machine (bench_sfm.py with GPU SIFT).
#
# pycolmap-cuda12 (73 MB), the CUDA 12 runtime and cuRAND it links (libcudart.so.12, libcurand.so.10), PyAV, the
# X11 client libraries pycolmap's wheel links, and the fox and fountain photos are more than one device call may
# carry (64 MiB), so they travel as a tar split into parts that a warm machine keeps in benchmarks/state/:
#
#   here:   bash benchmarks/gpu_sfm.sh pack           # .sfm-carry/part00, part01, ... (48 MiB each: with the
#                                                      tree, about 8 MiB, a call stays under its 64 MiB)
#   there:  bash benchmarks/gpu_sfm.sh stash          # one call per part, carrying .sfm-carry/partNN
#   there:  bash benchmarks/gpu_sfm.sh run [ARGS]     # the last call: unpack, install, check, bench_sfm.py ARGS
#
# On a GPU server that runs the backend, the same is one line: pip install pycolmap-cuda12==4.2.1 in place of
# pycolmap (docs/photos-and-video.md).
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.sfm-carry
STASH=benchmarks/state/sfm-stash
BUNDLE=/tmp/sfm-bundle
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64"
X11_DEBS="libsm6 libice6 libx11-6 libxext6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0 libuuid1"

case "${1:-}" in
pack)
  data=${CARRARA_SHARED_DATA:-../shared/data}
  rm -rf "$CARRY" && mkdir -p "$CARRY/build/whl" "$CARRY/build/data/fountain" "$CARRY/build/deb"
  grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS \
    -d "$CARRY/build/whl" pycolmap-cuda12==4.2.1 nvidia-cuda-runtime-cu12==12.9.79 nvidia-curand-cu12==10.3.10.19 \
    av==18.1.0
  cp -r "$data/instant_ngp_fox/images" "$CARRY/build/data/fox"
  cp -r "$data/strecha_fountain_p11/images" "$data/strecha_fountain_p11/colmap_gt_poses" "$CARRY/build/data/fountain/"
  apt_amd64="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64"
  mkdir -p /tmp/amd64/partial && apt-get $apt_amd64 update -qq
  (cd "$CARRY/build/deb" && apt-get $apt_amd64 download $X11_DEBS >/dev/null)
  tar -C "$CARRY/build" -cf - . | split -b 48M -d - "$CARRY/bundle.tar."
  rm -rf "$CARRY/build"
  for piece in "$CARRY"/bundle.tar.*; do
    part="$CARRY/part${piece##*.}"; mkdir -p "$part"; mv "$piece" "$part/"
  done
  du -sh "$CARRY"/part*
  ;;
stash)
  mkdir -p "$STASH"
  cp "$CARRY"/part*/bundle.tar.* "$STASH/"
  ls -la "$STASH"
  ;;
run)
  shift
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE"
  cat "$STASH"/bundle.tar.* | tar -C "$BUNDLE" -xf -
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$BUNDLE"/whl/pycolmap_cuda12-*.whl "$BUNDLE"/whl/av-*.whl
  # CUDA 12's libraries apart from the image's CUDA 13 ones, reached through the loader path only
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/cu12 \
    "$BUNDLE"/whl/nvidia_*.whl
  libs=/tmp/cu12/nvidia/cuda_runtime/lib:/tmp/cu12/nvidia/curand/lib
  if ! ldconfig -p | grep -q 'libX11.so.6\b' || ! ldconfig -p | grep -q 'libSM.so.6\b'; then
    for deb in "$BUNDLE"/deb/*.deb; do dpkg -x "$deb" /tmp/x11; done
    libs=$libs:/tmp/x11/usr/lib/x86_64-linux-gnu:/tmp/x11/lib/x86_64-linux-gnu
  fi
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PYTHONPATH="/tmp/site:$(python3 benchmarks/_bootstrap.py)${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  python3 -c "import pycolmap; print('pycolmap', pycolmap.__version__, 'CUDA:', pycolmap.has_cuda)"
  python3 benchmarks/bench_sfm.py --fox "$BUNDLE/data/fox" --fountain "$BUNDLE/data/fountain" "$@"
  ;;
*)
  echo "usage: $0 pack | stash | run [bench_sfm.py arguments]" >&2
  exit 2
  ;;
esac
