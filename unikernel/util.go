package unikernel

import (
	"sort"
	"sync/atomic"
)

func sortStrings(s []string) { sort.Strings(s) }

type atomicBool = atomic.Bool

func sortUint64(s []uint64) { sort.Slice(s, func(i, j int) bool { return s[i] < s[j] }) }
