package snapshots

import (
	"bytes"
	"strings"
	"sync"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/runtimes"
)

// collector gathers a UC's stdout and stderr lines for the activation in progress and
// tells when both streams have ended it (sentinel, or the UC's end). It is the process
// executor's collector (runtimes/process/logs.go) fed by io.Writers instead of pipes.
type collector struct {
	notify chan struct{}

	mu        sync.Mutex
	partial   [2][]byte
	lines     []activation.LogLine
	size      int
	limit     int
	truncated bool
	sentinels [2]int
	eof       bool
	heapOOM   bool
}

const (
	heapOOM = "JavaScript heap out of memory"
	maxLine = 16 << 20
)

var streamNames = [2]string{"stdout", "stderr"}

func newCollector() *collector { return &collector{notify: make(chan struct{}, 1)} }

// stream is the io.Writer of one stream (0 stdout, 1 stderr).
type stream struct {
	c *collector
	s int
}

func (w stream) Write(p []byte) (int, error) {
	c := w.c
	now := time.Now()
	c.mu.Lock()
	wake := false
	data := p
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			c.partial[w.s] = appendCapped(c.partial[w.s], data)
			break
		}
		line := data[:i]
		if len(c.partial[w.s]) > 0 {
			c.partial[w.s] = appendCapped(c.partial[w.s], line)
			line = c.partial[w.s]
		}
		if c.addLocked(w.s, line, now) {
			wake = true
		}
		c.partial[w.s] = c.partial[w.s][:0]
		data = data[i+1:]
	}
	c.mu.Unlock()
	if wake {
		c.wake()
	}
	return len(p), nil
}

func appendCapped(dst, src []byte) []byte {
	if room := maxLine - len(dst); room < len(src) {
		src = src[:max(room, 0)]
	}
	return append(dst, src...)
}

func (c *collector) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// addLocked records one line; it reports a sentinel.
func (c *collector) addLocked(s int, line []byte, t time.Time) bool {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	sentinel := bytes.HasSuffix(line, []byte(runtimes.Sentinel))
	if sentinel {
		line = line[:len(line)-len(runtimes.Sentinel)]
		c.sentinels[s]++
		if len(line) == 0 {
			return true
		}
	}
	if s == 1 && !c.heapOOM && bytes.Contains(line, []byte(heapOOM)) {
		c.heapOOM = true
	}
	if c.limit <= 0 {
		return sentinel
	}
	if c.truncated || c.size+len(line) > c.limit {
		c.truncated = true
		return sentinel
	}
	c.size += len(line)
	c.lines = append(c.lines, activation.LogLine{Time: t, Stream: streamNames[s], Text: strings.Clone(string(line))})
	return sentinel
}

// end marks both streams ended (the UC is gone), flushing partial lines.
func (c *collector) end() {
	c.mu.Lock()
	for s := range c.partial {
		if len(c.partial[s]) > 0 {
			c.addLocked(s, c.partial[s], time.Now())
			c.partial[s] = nil
		}
	}
	c.eof = true
	c.mu.Unlock()
	c.wake()
}

func (c *collector) begin(limit int) {
	c.mu.Lock()
	c.limit = limit
	c.mu.Unlock()
}

func (c *collector) ended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eof || c.sentinels[0] > 0 && c.sentinels[1] > 0
}

// wait blocks until both streams ended the activation, or until deadline.
func (c *collector) wait(deadline time.Time) bool {
	var t *time.Timer
	for !c.ended() {
		if t == nil {
			d := time.Until(deadline)
			if d <= 0 {
				return false
			}
			t = time.NewTimer(d)
			defer t.Stop()
		}
		select {
		case <-c.notify:
		case <-t.C:
			return c.ended()
		}
	}
	return true
}

// take returns the activation's lines and resets for the next one.
func (c *collector) take() ([]activation.LogLine, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines, trunc := c.lines, c.truncated
	c.lines, c.size, c.truncated = nil, 0, false
	for s := range c.sentinels {
		if c.sentinels[s] > 0 {
			c.sentinels[s]--
		}
	}
	return lines, trunc
}

// drop forgets what was collected (the warm-up's logs).
func (c *collector) drop() {
	c.mu.Lock()
	c.lines, c.size, c.truncated = nil, 0, false
	c.sentinels = [2]int{}
	c.mu.Unlock()
}

func (c *collector) sawHeapOOM() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heapOOM
}
