#!/usr/bin/env bash
# gpu-bundle.sh — packs what a lent GPU machine needs to run mu's CUDA tests and benchmark
# into .gpu/ (git-ignored), built here, because that machine cannot install packages:
#   .gpu/bin/     run-tests, bench_cuda and the mu-* tools of build/rel (CUDA build)
#   .gpu/lib/     the shared libraries they need that a CUDA image may lack (msgpack-c,
#                 zstd, pcre2, jansson, OpenBLAS, utf8proc, xxhash, libgomp, libgfortran,
#                 libquadmath); glibc, libstdc++ and the CUDA libraries come from the machine
#   .gpu/shared/  ../shared/data/{models/stories260K,sports,tokenizers} (what the C tests read)
#   .gpu/include/ the headers of those libraries, for building there instead
#                 (gpu-check.sh --build) if the binaries built here do not run
# and packs it into .gpu.tgz (gzip -9: about 19 MiB of its 58; OpenBLAS alone is 36 MiB),
# which gpu-check.sh unpacks there. Then, through the device tool:
#   run(command="bash scripts/gpu-check.sh", carry=[".gpu.tgz"])
# The tool's carry limit (64 MiB) counts the working tree too: binaries are stripped and the
# bundle compressed.
set -euo pipefail
cd "$(dirname "$0")/.."
make -j"$(nproc)" all >/dev/null
make -j"$(nproc)" build/rel/tests/run-tests build/rel/bench/bench_cuda >/dev/null
grep -q 'MU_HAVE_CUDA' build/rel/kernels/cuda/cuda_backend.d 2>/dev/null || [ -e build/rel/kernels/cuda/cuda_backend.o ] ||
  { echo "gpu-bundle: build/rel has no CUDA objects (nvcc not found?)" >&2; exit 1; }
rm -rf .gpu
mkdir -p .gpu/bin .gpu/lib .gpu/shared/data
cp build/rel/tests/run-tests build/rel/bench/bench_cuda build/rel/bin/mu-* .gpu/bin/
strip --strip-unneeded .gpu/bin/*
# libraries: everything ldd resolves except the C runtime, libstdc++/libgcc and CUDA's
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libstdc\+\+|libgcc_s|libz\.|libcublas|libcudart|libcuda\.)'
for b in .gpu/bin/*; do ldd "$b"; done | awk '$3 ~ /^\// { print $1, $3 }' | sort -u |
  while read -r name path; do
    [[ $name =~ $skip ]] && continue
    cp -L "$path" ".gpu/lib/$name"
  done
strip --strip-unneeded .gpu/lib/* 2>/dev/null || true
# headers (for a build on the GPU machine against .gpu/lib)
mkdir -p .gpu/include
for h in msgpack.h zstd.h zstd_errors.h jansson.h jansson_config.h pcre2.h utf8proc.h xxhash.h \
         zlib.h zconf.h; do
  cp "/usr/include/$h" .gpu/include/
done
mkdir -p .gpu/include/msgpack                  # msgpack-c's C headers (not its 7 MB of C++)
cp /usr/include/msgpack/*.h .gpu/include/msgpack/
cp -r "$(pkg-config --variable=includedir openblas 2>/dev/null || echo /usr/include/x86_64-linux-gnu/openblas-openmp)"/. .gpu/include/
# the shared data the C tests read (models/stories260K, sports, tokenizers: 4 MB; TOFU,
# MMLU and CounterFact are only read by the shell tests and would pass the carry limit)
for d in models/stories260K sports tokenizers; do
  if [ -d "../shared/data/$d" ]; then
    mkdir -p ".gpu/shared/data/$(dirname "$d")"
    cp -r "../shared/data/$d" ".gpu/shared/data/$d"
  else
    echo "gpu-bundle: no ../shared/data/$d: the tests that read it will skip" >&2
  fi
done
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
grep -qx '/.gpu.tgz' .git/info/exclude 2>/dev/null || echo '/.gpu.tgz' >> .git/info/exclude
tar -cf - .gpu | gzip -9 > .gpu.tgz.tmp && mv .gpu.tgz.tmp .gpu.tgz
du -sh .gpu .gpu.tgz
ls .gpu/lib
