#!/usr/bin/env bash
# The load generator's figures for docs/benchmarks.md ("Load generator"): every command that
# made them, in order. Output: docs/loadtest/*.txt (tables, with the load average before each)
# and *.svg (plots). Bounded: a few minutes on 2 cores. Needs `make rootfs` for the seuss and
# boot targets. Usage: loadtest/figures.sh [bin/loadtest]
# The binary is built from a clean export of HEAD (so every figure names the commit it
# measured), or from the working tree with FROM=worktree.
set -euo pipefail
cd "$(dirname "$0")/.."
LT=$(realpath -m "${1:-bin/loadtest}")
mkdir -p "$(dirname "$LT")"
OUT=docs/loadtest
mkdir -p "$OUT"
if [ "${FROM:-head}" = worktree ]; then
	go build -o "$LT" ./loadtest
	BUILT="the working tree at $(git rev-parse --short HEAD) + $(git status --porcelain -- '*.go' | wc -l) changed Go files"
else
	src=$(mktemp -d)
	trap 'rm -rf "$src"' EXIT
	git archive HEAD | tar -x -C "$src"
	(cd "$src" && go build -o "$LT" ./loadtest)
	BUILT="commit $(git rev-parse --short HEAD)"
fi

run() { # name, then the arguments
	local name=$1; shift
	echo "\$ loadtest $*" | tee "$OUT/$name.txt"
	echo "# built from $BUILT; load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/$name.txt"
	"$LT" "$@" 2>&1 | tee -a "$OUT/$name.txt"
}

# Throughput: the same workload against seuss, boot and process in one process.
# The decisive runs' workload (loadtest/compare.py repeats it 7 times and takes medians).
run new-functions-python run --scenario new-functions --activations 300 --parallel 2 --kind python:3.11 \
	--compare boot,process --plot "$OUT/new-functions-python.svg"
run new-functions-nodejs run --scenario new-functions --activations 200 --parallel 2 --kind nodejs:20 \
	--compare boot,process --plot "$OUT/new-functions-nodejs.svg"
run repeat-python run --scenario repeat --activations 1000 --parallel 4 --kind python:3.11 \
	--compare process --plot "$OUT/repeat-python.svg"
run zipf-python run --scenario zipf --functions 50 --activations 300 --rate 20/s --kind python:3.11 \
	--compare process --plot "$OUT/zipf-python.svg"
run burst-python run --scenario burst --activations 50 --kind python:3.11 --compare process

# Invoker overhead on the H path: one activation outstanding, 1 ms of spin.
for t in seuss process; do
	run "overhead-python-$t" run --target $t --scenario repeat --activations 500 --parallel 1 --spin 1 --kind python:3.11
done
run overhead-nodejs-process run --target process --scenario repeat --activations 500 --parallel 1 --spin 1 --kind nodejs:20

# Deployment paths inside the invoker (issue 5's benchmark).
run deploy-python-seuss deploy --kind python:3.11 --n 20
run deploy-nodejs-seuss deploy --kind nodejs:20 --n 10
run deploy-python-process deploy --target process --kind python:3.11 --n 30
run deploy-nodejs-process deploy --target process --kind nodejs:20 --n 30

# Density: idle warm processes per GiB (1 GiB of PSS), function snapshots per GiB (32 MiB of
# cache footprint: ~300 distinct functions, scaled to a GiB).
run density-python-process density --only processes --kind python:3.11 --budget 1GiB
run density-nodejs-process density --only processes --kind nodejs:20 --budget 1GiB
run density-python-seuss density --only snapshots --kind python:3.11 --budget 32MiB
run density-nodejs-seuss density --only snapshots --kind nodejs:20 --budget 32MiB
