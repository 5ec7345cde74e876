package sharing

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Usage is memory as the kernel counts it for a range of this process's address space
// (the sums of /proc/self/smaps over the mappings inside it), in bytes.
type Usage struct {
	// Rss is resident memory; Pss divides each page by the processes mapping it.
	Rss, Pss int64
	// SharedClean and SharedDirty: pages also mapped elsewhere (the runtime snapshot's
	// page-cache pages every UC of a kind maps); PrivateClean and PrivateDirty: this
	// range's own (pages a UC wrote since its restore are PrivateDirty).
	SharedClean, SharedDirty, PrivateClean, PrivateDirty int64
	// Anonymous counts anonymous pages (copied on write, or fresh memory).
	Anonymous int64
}

// Private is the range's own memory.
func (u Usage) Private() int64 { return u.PrivateClean + u.PrivateDirty }

// Shared is memory the range shares with other mappings.
func (u Usage) Shared() int64 { return u.SharedClean + u.SharedDirty }

// RangeUsage sums /proc/self/smaps over the mappings that lie within [addr, addr+n).
// Within one process a page-cache page that two UCs both map counts as shared only if
// they map the same file: the runtime snapshot's memory file, so it does.
func RangeUsage(addr, n uintptr) (Usage, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return Usage{}, fmt.Errorf("sharing: %w", err)
	}
	defer f.Close()
	var u Usage
	in := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, ' '); i > 0 && strings.IndexByte(line[:i], '-') > 0 && !strings.HasSuffix(line[:i], ":") {
			var lo, hi uint64
			if _, err := fmt.Sscanf(line[:i], "%x-%x", &lo, &hi); err == nil {
				in = uintptr(lo) >= addr && uintptr(hi) <= addr+n
			}
			continue
		}
		if !in {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) < 1 {
			continue
		}
		kb, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			continue
		}
		b := kb << 10
		switch k {
		case "Rss":
			u.Rss += b
		case "Pss":
			u.Pss += b
		case "Shared_Clean":
			u.SharedClean += b
		case "Shared_Dirty":
			u.SharedDirty += b
		case "Private_Clean":
			u.PrivateClean += b
		case "Private_Dirty":
			u.PrivateDirty += b
		case "Anonymous":
			u.Anonymous += b
		}
	}
	return u, sc.Err()
}
