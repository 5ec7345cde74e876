package unikernel

import (
	"sort"
	"sync/atomic"
)

func sortStrings(s []string) { sort.Strings(s) }

type atomicBool = atomic.Bool
