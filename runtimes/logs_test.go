package runtimes

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestLogCollectorSentinelAtLineEnd(t *testing.T) {
	c := NewLogCollector()
	c.Begin(1 << 20)
	c.Stream(0).Write([]byte("partial" + Sentinel + "\n"))
	c.Stream(1).Write([]byte(Sentinel + "\n"))
	if !c.Ended() {
		t.Fatal("sentinels not seen")
	}
	lines, _ := c.Take()
	if len(lines) != 1 || lines[0].Text != "partial" || lines[0].Stream != "stdout" {
		t.Errorf("lines %+v", lines)
	}
	if c.Ended() {
		t.Error("sentinels not consumed")
	}
}

func TestLogCollectorLinesAcrossWrites(t *testing.T) {
	c := NewLogCollector()
	c.Begin(1 << 20)
	w := c.Stream(1)
	for _, p := range []string{"he", "llo\r\nwor", "ld\n", Sentinel[:5], Sentinel[5:] + "\n"} {
		w.Write([]byte(p))
	}
	if c.Ended() {
		t.Fatal("ended with stdout still open")
	}
	c.Stream(0).Write([]byte(Sentinel + "\n"))
	lines, trunc := c.Take()
	var got []string
	for _, l := range lines {
		got = append(got, l.Stream+":"+l.Text)
	}
	if strings.Join(got, "|") != "stderr:hello|stderr:world" || trunc {
		t.Errorf("got %q truncated %v", got, trunc)
	}
}

func TestLogCollectorLimit(t *testing.T) {
	c := NewLogCollector()
	c.Begin(10)
	c.Stream(0).Write([]byte("12345\n678\n90123\n"))
	lines, trunc := c.Take()
	if len(lines) != 2 || !trunc {
		t.Errorf("lines %+v truncated %v", lines, trunc)
	}
	c.Begin(0)
	c.Stream(0).Write([]byte("dropped\n"))
	if lines, trunc := c.Take(); len(lines) != 0 || trunc {
		t.Errorf("limit 0 kept %+v %v", lines, trunc)
	}
}

func TestLogCollectorReadFromPipes(t *testing.T) {
	c := NewLogCollector()
	c.Begin(1 << 20)
	var ws [2]*os.File
	for s := range ws {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		ws[s] = w
		go c.ReadFrom(s, r)
	}
	ws[0].WriteString("out\nno newline")
	ws[1].WriteString("FATAL ERROR: Reached heap limit - JavaScript heap out of memory\n")
	if c.Wait(time.Now().Add(50 * time.Millisecond)) {
		t.Fatal("ended while both pipes are open")
	}
	ws[0].Close()
	ws[1].Close()
	if !c.Wait(time.Now().Add(10 * time.Second)) {
		t.Fatal("pipes closed but not ended")
	}
	lines, _ := c.Take()
	if len(lines) != 3 || lines[1].Text != "no newline" && lines[2].Text != "no newline" {
		t.Errorf("lines %+v", lines)
	}
	if !c.SawHeapOOM() {
		t.Error("heap exhaustion not seen")
	}
	if !c.Ended() {
		t.Error("an ended stream must stay ended")
	}
}

func TestLogCollectorDrop(t *testing.T) {
	c := NewLogCollector()
	c.Begin(1 << 20)
	c.Stream(0).Write([]byte("warm\n" + Sentinel + "\n"))
	c.Stream(1).Write([]byte(Sentinel + "\n"))
	c.Drop()
	if c.Ended() {
		t.Error("Drop kept the sentinels")
	}
	if lines, _ := c.Take(); len(lines) != 0 {
		t.Errorf("Drop kept %+v", lines)
	}
}

func TestLogCollectorEnd(t *testing.T) {
	c := NewLogCollector()
	c.Begin(1 << 20)
	c.Stream(0).Write([]byte("last words"))
	c.End()
	if !c.Wait(time.Now()) {
		t.Fatal("End did not end the streams")
	}
	if lines, _ := c.Take(); len(lines) != 1 || lines[0].Text != "last words" {
		t.Errorf("partial line lost: %+v", lines)
	}
}
