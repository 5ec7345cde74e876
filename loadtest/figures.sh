#!/usr/bin/env bash
# The load generator's figures for docs/benchmarks.md ("Load generator"): every command that
# made them, in order. Output: docs/loadtest/*.txt (tables) and *.svg (plots).
# Bounded: about two minutes on 2 cores. Usage: loadtest/figures.sh [bin/loadtest]
set -euo pipefail
cd "$(dirname "$0")/.."
LT=${1:-bin/loadtest}
OUT=docs/loadtest
mkdir -p "$OUT"
go build -o "$LT" ./loadtest

run() { # name, then the arguments
	local name=$1; shift
	echo "\$ loadtest $*" | tee "$OUT/$name.txt"
	echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/$name.txt"
	"$LT" "$@" 2>&1 | tee -a "$OUT/$name.txt"
}

for k in python:3.11 nodejs:20; do
	l=${k%%:*}
	run "new-functions-$l" run --target process --scenario new-functions --activations 300 --parallel 4 --kind "$k" --plot "$OUT/new-functions-$l.svg"
	run "repeat-$l" run --target process --scenario repeat --activations 2000 --parallel 4 --kind "$k" --plot "$OUT/repeat-$l.svg"
	run "overhead-$l" run --target process --scenario repeat --activations 1000 --parallel 1 --spin 1 --kind "$k"
	run "deploy-$l" deploy --kind "$k" --n 30
	run "density-$l" density --kind "$k" --budget 1GiB
done
run zipf-python run --target process --scenario zipf --functions 50 --activations 600 --rate 30/s --kind python:3.11 --plot "$OUT/zipf-python.svg"
run burst-python run --target process --scenario burst --activations 100 --kind python:3.11
