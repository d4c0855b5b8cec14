#!/usr/bin/env bash
# alba's speed and memory benchmark: alba against its peer tools, in one run.
#
#   bench/run.sh                          every measurement, 3 rounds each
#   BENCH_ROUNDS=5 bench/run.sh           more rounds (the table shows medians)
#   BENCH_ONLY=static,memory bench/run.sh only some: static, folder, registry, memory,
#                                         layered, shared, scale
#   BENCH_ONLY=scale BENCH_SCALE_BEFORE=/tmp/alba-main bench/run.sh  the scale measurement, this
#                                         build beside another one (BENCH_SCALE_TAGS=20,200)
#   BENCH_ALBA=/tmp/alba-variant bench/run.sh  measure another alba build (A/B a speed change)
#
# Measurements (inputs are real machine code from /usr/bin, /usr/lib/x86_64-linux-gnu and the
# Garage binary, different per platform, streamed to a temp folder):
#   1. static    4 × 64 MiB binaries to Garage: `alba static push` vs `rclone copy`, cold;
#                then warm (alba must send 0 bytes: its report and the objects' Last-Modified).
#   2. folder    4 images with a 64 MiB layer (uncompressed docker archives):
#                `alba container push DIR file:OUT` vs `skopeo copy --dest-compress
#                --dest-compress-format gzip docker-archive:X oci:OUT:<tag>` × 4, cold (empty
#                caches) and warm; compressed layer bytes of both.
#   3. registry  the same images to Debian's docker-registry: alba vs `skopeo copy
#                --dest-tls-verify=false … docker://…` × 4, cold and warm; warm blob uploads
#                counted in the registry's access log.
#   4. memory    peak RSS (/usr/bin/time -v) of alba pushing an image with a 2 GiB layer to a
#                folder (needs ~5 GiB free in $TMPDIR; removed afterwards).
#   5. layered   an image shaped like buildLayeredImage output (100 layers, 300 MiB of machine
#                code, log-normal sizes from 40 MiB down to 4 KiB) to the registry: (a) cold vs
#                skopeo; (b) its next version, one ~170 KiB layer changed, v1 already on the
#                registry, both tools with empty caches (alba must write 2 blobs: that layer
#                and the config); (a) again with --compression zstd (time and bytes vs gzip).
#   6. shared    (c) 4 platforms × 64 MiB sharing one 32 MiB base layer, cold, to the registry.
#   7. scale     `ls`, `gc --keep 10 --dry-run`, `verify --quick` and a push of one more tag over
#                histories of 20, 200 and 1,000 tags (static, images) on Garage, through a
#                counting proxy: requests and seconds on loopback and behind 30 ms per request.
# Cold runs start from empty caches: alba's, and skopeo's blob-info cache (removed first).
# Every run is wrapped in /usr/bin/time -v (wall, CPU, peak RSS are printed per run), then a
# summary table of medians, ratios and the design's targets. It fails only if alba misbehaves
# (a warm run sending bytes, a wrong image), never because a figure misses its target.
#
# Needs what tests/run.sh installs: garage 2.x (~/.cache/garage-2.5.0 or ALBA_GARAGE), and the
# Debian packages rclone skopeo docker-registry time. Builds alba in release mode (the first
# build takes 10-15 min). Timings are only meaningful on an otherwise idle machine: the load
# average is printed at the start of each round and in the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release --locked --test bench -- --ignored --nocapture --test-threads 1 "$@"
