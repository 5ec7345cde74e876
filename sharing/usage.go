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

// Private is the range's pages mapped nowhere else right now (smaps' view: a page-cache
// page only this range maps counts, though any other UC of the kind could share it).
func (u Usage) Private() int64 { return u.PrivateClean + u.PrivateDirty }

// Shared is memory the range shares with other mappings right now.
func (u Usage) Shared() int64 { return u.SharedClean + u.SharedDirty }

// Own is the memory only this range can ever use: its anonymous pages (copied on write
// or fresh). The rest of Rss is page cache (the runtime snapshot's file), shareable.
func (u Usage) Own() int64 { return u.Anonymous }

// Shareable is resident memory backed by files: one copy for every UC mapping them.
func (u Usage) Shareable() int64 { return u.Rss - u.Anonymous }

// RangeUsage sums /proc/self/smaps over the mappings that lie within [addr, addr+n).
// Within one process a page-cache page that two UCs both map counts as shared only if
// they map the same file: the runtime snapshot's memory file, so it does.
func RangeUsage(addr, n uintptr) (Usage, error) {
	us, err := RangesUsage([][2]uintptr{{addr, addr + n}})
	if err != nil {
		return Usage{}, err
	}
	return us[0], nil
}

// RangesUsage is RangeUsage for several disjoint ranges [lo, hi), in one pass.
func RangesUsage(ranges [][2]uintptr) ([]Usage, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, fmt.Errorf("sharing: %w", err)
	}
	defer f.Close()
	out := make([]Usage, len(ranges))
	var u *Usage
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, ' '); i > 0 && strings.IndexByte(line[:i], '-') > 0 && !strings.HasSuffix(line[:i], ":") {
			var lo, hi uint64
			u = nil
			if _, err := fmt.Sscanf(line[:i], "%x-%x", &lo, &hi); err == nil {
				for j, r := range ranges {
					if uintptr(lo) >= r[0] && uintptr(hi) <= r[1] {
						u = &out[j]
						break
					}
				}
			}
			continue
		}
		if u == nil {
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
	return out, sc.Err()
}
