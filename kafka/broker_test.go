package kafka

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

func TestBrokerTopicsAndKcat(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := StartBroker(ctx, "127.0.0.1:0", "invoker0", "completed0", HealthTopic)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	// Creating an existing topic again is not an error.
	if err := EnsureTopic(ctx, []string{b.Addr()}, "invoker0"); err != nil {
		t.Fatal(err)
	}

	// A message near OpenWhisk's limit fits invoker0 (max.message.bytes=1054644).
	w := &kafkago.Writer{Addr: kafkago.TCP(b.Addr()), Topic: "invoker0", RequiredAcks: kafkago.RequireOne, BatchBytes: MaxMessageBytes}
	defer w.Close()
	big := strings.Repeat("x", 1040000)
	if err := w.WriteMessages(ctx, kafkago.Message{Value: []byte(big)}, kafkago.Message{Value: []byte("hello")}); err != nil {
		t.Fatal(err)
	}

	if _, err := exec.LookPath("kcat"); err != nil {
		t.Skip("kcat not installed")
	}
	out, err := exec.CommandContext(ctx, "kcat", "-b", b.Addr(), "-C", "-t", "invoker0", "-o", "1", "-c", "1", "-e", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v: %s", err, out)
	}
	if strings.TrimSpace(string(out)) != "hello" {
		t.Fatalf("kcat read %q", out)
	}
	out, err = exec.CommandContext(ctx, "kcat", "-b", b.Addr(), "-L", "-t", "invoker0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 partitions") {
		t.Fatalf("kcat -L: %v: %s", err, out)
	}
}

func TestSplitBrokers(t *testing.T) {
	got := SplitBrokers("kafka.docker:9092, other ,h:1")
	want := []string{"kafka.docker:9092", "other:9092", "h:1"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v", got)
	}
}
