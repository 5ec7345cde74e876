#!/bin/sh
# Rebuilds vdso.so from vdso.c (go generate ./unikernel runs it). The result is committed,
# so building seuss needs no C compiler.
set -e
cd "$(dirname "$0")"
gcc -O2 -fPIC -shared -nostdlib -fno-stack-protector -fno-asynchronous-unwind-tables \
	-mno-red-zone -Wl,-soname=linux-vdso.so.1 -Wl,--version-script=vdso.lds \
	-Wl,--hash-style=both -Wl,-T,layout.lds -Wl,--build-id=none -Wl,-z,noexecstack \
	-o vdso.so vdso.c
strip --strip-unneeded vdso.so
