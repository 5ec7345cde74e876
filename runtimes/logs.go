package runtimes

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// LogCollector gathers one runtime instance's stdout and stderr lines for the activation
// in progress, and tells when both streams have ended it: each stream's Sentinel, or the
// stream's end. Both executors use it: a unikernel context's library OS writes the
// guest's fds 1 and 2 into Stream writers, a host process's pipes are drained by
// ReadFrom.
//
// Lines are stamped with the time they were read, capped at the activation's log limit
// (the rest counted as truncated), and a node heap-exhaustion message is remembered
// (SawHeapOOM) so that a run killed by it reports the memory limit.
type LogCollector struct {
	// notify gets a token whenever a stream reaches a sentinel or its end.
	notify chan struct{}

	mu        sync.Mutex
	partial   [2][]byte // a stream's line not yet ended by '\n'
	lines     []activation.LogLine
	size      int
	limit     int
	truncated bool
	sentinels [2]int  // sentinels seen and not yet consumed, per stream
	eof       [2]bool // stream ended
	heapOOM   bool    // node printed its heap-exhaustion error
}

// heapOOM is what V8 prints when its heap limit is exceeded.
const heapOOM = "JavaScript heap out of memory"

// maxLine bounds one line held in memory; the log limit cuts further anyway.
const maxLine = 16 << 20

var streamNames = [2]string{"stdout", "stderr"}

// NewLogCollector returns a collector with no activation begun (limit 0: lines are
// counted for sentinels but not kept).
func NewLogCollector() *LogCollector {
	return &LogCollector{notify: make(chan struct{}, 1)}
}

// Stream returns the io.Writer of one stream (0 stdout, 1 stderr). Writes never fail.
func (c *LogCollector) Stream(s int) io.Writer { return stream{c, s} }

type stream struct {
	c *LogCollector
	s int
}

func (w stream) Write(p []byte) (int, error) {
	w.c.write(w.s, p, time.Now())
	return len(p), nil
}

// ReadFrom consumes stream s from f until its end (a pipe's EOF or a read error on our
// own end), then ends the stream and closes f. It runs in its own goroutine for the life
// of the instance.
func (c *LogCollector) ReadFrom(s int, f io.ReadCloser) {
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			c.write(s, buf[:n], time.Now())
		}
		if err != nil {
			c.EndStream(s)
			return
		}
	}
}

func (c *LogCollector) write(s int, data []byte, now time.Time) {
	c.mu.Lock()
	wake := false
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			c.partial[s] = appendCapped(c.partial[s], data)
			break
		}
		line := data[:i]
		if len(c.partial[s]) > 0 {
			c.partial[s] = appendCapped(c.partial[s], line)
			line = c.partial[s]
		}
		if c.addLocked(s, line, now) {
			wake = true
		}
		c.partial[s] = c.partial[s][:0]
		data = data[i+1:]
	}
	c.mu.Unlock()
	if wake {
		c.wake()
	}
}

func appendCapped(dst, src []byte) []byte {
	if room := maxLine - len(dst); room < len(src) {
		src = src[:max(room, 0)]
	}
	return append(dst, src...)
}

func (c *LogCollector) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// addLocked records one line; it reports a sentinel.
func (c *LogCollector) addLocked(s int, line []byte, t time.Time) bool {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	sentinel := bytes.HasSuffix(line, []byte(Sentinel))
	if sentinel {
		// Our launchers put it on a line of its own; a foreign one may not.
		line = line[:len(line)-len(Sentinel)]
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

// EndStream marks stream s ended (its pipe closed, or the instance gone), keeping a
// partial last line.
func (c *LogCollector) EndStream(s int) {
	c.mu.Lock()
	if len(c.partial[s]) > 0 {
		c.addLocked(s, c.partial[s], time.Now())
		c.partial[s] = nil
	}
	c.eof[s] = true
	c.mu.Unlock()
	c.wake()
}

// End marks both streams ended.
func (c *LogCollector) End() {
	c.EndStream(0)
	c.EndStream(1)
}

// Begin starts collecting for a new activation with a log limit in bytes.
func (c *LogCollector) Begin(limit int) {
	c.mu.Lock()
	c.limit = limit
	c.mu.Unlock()
}

// Ended reports whether both streams have ended the current activation.
func (c *LogCollector) Ended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return (c.sentinels[0] > 0 || c.eof[0]) && (c.sentinels[1] > 0 || c.eof[1])
}

// Wait blocks until both streams ended the activation, or until deadline; it reports
// whether they did.
func (c *LogCollector) Wait(deadline time.Time) bool {
	var t *time.Timer
	for !c.Ended() {
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
			return c.Ended()
		}
	}
	return true
}

// Take returns the activation's lines and whether the limit cut them, consumes one
// sentinel per stream and resets for the next activation.
func (c *LogCollector) Take() ([]activation.LogLine, bool) {
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

// Drop forgets everything collected, sentinels included (a warm-up's logs).
func (c *LogCollector) Drop() {
	c.mu.Lock()
	c.lines, c.size, c.truncated = nil, 0, false
	c.sentinels = [2]int{}
	c.mu.Unlock()
}

// SawHeapOOM reports whether node wrote its heap-exhaustion message on stderr.
func (c *LogCollector) SawHeapOOM() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heapOOM
}
