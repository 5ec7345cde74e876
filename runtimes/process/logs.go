package process

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/runtimes"
)

// heapOOM is what V8 prints when --max-old-space-size is exceeded.
const heapOOM = "JavaScript heap out of memory"

// collector gathers one instance's stdout and stderr lines for the activation in
// progress and tells when both streams have ended it (sentinel or end of file).
type collector struct {
	// notify gets a token whenever a stream reaches a sentinel or its end.
	notify chan struct{}

	mu        sync.Mutex
	lines     []activation.LogLine
	size      int
	limit     int
	truncated bool
	sentinels [2]int  // sentinels seen and not yet consumed, per stream
	eof       [2]bool // stream closed
	heapOOM   bool    // node printed its heap-exhaustion error
}

func newCollector() *collector {
	return &collector{notify: make(chan struct{}, 1)}
}

var streamNames = [2]string{"stdout", "stderr"}

// read consumes one stream until its end; it runs in its own goroutine for the life
// of the process.
func (c *collector) read(s int, f *os.File) {
	defer f.Close()
	buf := make([]byte, 64<<10)
	var partial []byte
	for {
		n, err := f.Read(buf)
		if n > 0 {
			now := time.Now()
			data := buf[:n]
			for len(data) > 0 {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					partial = appendCapped(partial, data)
					break
				}
				line := data[:i]
				if len(partial) > 0 {
					partial = appendCapped(partial, line)
					line = partial
				}
				c.add(s, line, now)
				partial = partial[:0]
				data = data[i+1:]
			}
		}
		if err != nil {
			if len(partial) > 0 {
				c.add(s, partial, time.Now())
			}
			// io.EOF, or a read error on our own pipe end: either ends the stream.
			c.mu.Lock()
			c.eof[s] = true
			c.mu.Unlock()
			c.wake()
			return
		}
	}
}

// maxLine bounds one line held in memory; the log limit cuts further anyway.
const maxLine = 16 << 20

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

func (c *collector) add(s int, line []byte, t time.Time) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	sentinel := bytes.HasSuffix(line, []byte(runtimes.Sentinel))
	if sentinel {
		// Our launchers put it on a line of its own; a foreign one may not.
		line = line[:len(line)-len(runtimes.Sentinel)]
		defer c.wake()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if sentinel {
		c.sentinels[s]++
		if len(line) == 0 {
			return
		}
	}
	if s == 1 && !c.heapOOM && bytes.Contains(line, []byte(heapOOM)) {
		c.heapOOM = true
	}
	if c.limit <= 0 {
		return
	}
	if c.truncated || c.size+len(line) > c.limit {
		c.truncated = true
		return
	}
	c.size += len(line)
	c.lines = append(c.lines, activation.LogLine{Time: t, Stream: streamNames[s], Text: strings.Clone(string(line))})
}

// begin starts collecting for a new activation with a log limit.
func (c *collector) begin(limit int) {
	c.mu.Lock()
	c.limit = limit
	c.mu.Unlock()
}

// ended reports whether both streams have ended the current activation.
func (c *collector) ended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return (c.sentinels[0] > 0 || c.eof[0]) && (c.sentinels[1] > 0 || c.eof[1])
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

func (c *collector) sawHeapOOM() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heapOOM
}
