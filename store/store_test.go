package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
)

func TestEncodeCodeInline(t *testing.T) {
	a := &activation.WhiskAction{Namespace: "guest", Name: "hello"}
	// Golden value: the protocol document's example (§5.1), Java's URL-safe base64 with padding.
	code := "function main(params) { return {payload: 'Hello, ' + params.name} }"
	att, _, err := EncodeCode(a, []byte(code))
	if err != nil || att != "" {
		t.Fatalf("inline: attachment %q, %v", att, err)
	}
	var got activation.Attachment
	if err := json.Unmarshal(a.Exec.Code, &got); err != nil {
		t.Fatal(err)
	}
	want := "mem:ZnVuY3Rpb24gbWFpbihwYXJhbXMpIHsgcmV0dXJuIHtwYXlsb2FkOiAnSGVsbG8sICcgKyBwYXJhbXMubmFtZX0gfQ=="
	if got.AttachmentName != want || *got.Length != 67 || got.AttachmentType != TextCodeType || len(got.Digest) != 7+64 {
		t.Fatalf("inline code: %+v", got)
	}
	b, err := ReadCode(context.Background(), nil, a)
	if err != nil || string(b) != code {
		t.Fatalf("read back %q, %v", b, err)
	}
	// URL-safe alphabet: bytes that base64 std would encode with '+' and '/'.
	a.Exec.Binary = true
	EncodeCode(a, []byte{0xfb, 0xff, 0xfe})
	json.Unmarshal(a.Exec.Code, &got)
	if got.AttachmentName != "mem:-__-" || got.AttachmentType != BinaryCodeType {
		t.Fatalf("binary inline: %+v", got)
	}
}

func TestEncodeCodeAttachment(t *testing.T) {
	a := &activation.WhiskAction{Namespace: "guest", Name: "big"}
	att, ct, err := EncodeCode(a, make([]byte, MaxInlineSize))
	if err != nil || att == "" || ct != TextCodeType {
		t.Fatalf("attachment %q %q %v", att, ct, err)
	}
	if CodeAttachment(a) != att {
		t.Fatalf("CodeAttachment %q, want %q", CodeAttachment(a), att)
	}
	a.Exec.Code = json.RawMessage(`{"attachmentName":"codefile","attachmentType":"text/plain"}`)
	if CodeAttachment(a) != "codefile" {
		t.Fatal("legacy relative name")
	}
	a.Exec.Code = json.RawMessage(`{"attachmentName":"s3:x"}`)
	if CodeAttachment(a) != "" {
		t.Fatal("s3: is not ours")
	}
}

func TestNextRev(t *testing.T) {
	r1 := NextRev("", []byte("a"))
	r2 := NextRev(r1, []byte("b"))
	if r1[:2] != "1-" || r2[:2] != "2-" || r1[2:] == r2[2:] {
		t.Fatalf("%s %s", r1, r2)
	}
	if NextRev("41-abc", nil)[:3] != "42-" {
		t.Fatal("generation")
	}
}

func TestPage(t *testing.T) {
	xs := []int{0, 1, 2, 3, 4}
	for _, tc := range []struct{ skip, limit, n int }{{0, 0, 5}, {1, 2, 2}, {4, 9, 1}, {5, 1, 0}, {-1, 3, 3}} {
		if got := Page(xs, tc.skip, tc.limit); len(got) != tc.n {
			t.Errorf("Page(skip %d, limit %d) = %v", tc.skip, tc.limit, got)
		}
	}
}

func TestActivationDocLayout(t *testing.T) {
	a := &activation.WhiskActivation{Namespace: "guest", Name: "hello", ActivationID: "abc", Logs: []string{}, Annotations: []activation.KeyValue{}}
	b, err := json.Marshal(NewActivationDoc(a, time.UnixMilli(1716200000790)))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"_id":"guest/abc","entityType":"activation","updated":1716200000790,"namespace":"guest","name":"hello","subject":"","activationId":"abc","start":0,"end":0,"response":{"statusCode":0},"logs":[],"version":"","publish":false,"annotations":[]}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	got, err := DecodeActivation(b)
	if err != nil || got.ActivationID != "abc" {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := DecodeActivation([]byte(`{"_id":"x","entityType":"action"}`)); !errors.Is(err, activation.ErrNotFound) {
		t.Fatalf("wrong entity type: %v", err)
	}
}

func TestRetry(t *testing.T) {
	ctx := context.Background()
	r := Retry{Attempts: 3, Timeout: 20 * time.Millisecond, Backoff: time.Millisecond}
	n := 0
	err := r.Do(ctx, func(ctx context.Context, retried bool) error {
		n++
		if n < 3 {
			return fmt.Errorf("down: %w", activation.ErrUnavailable)
		}
		if !retried {
			t.Error("third attempt not marked retried")
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("retry: %d attempts, %v", n, err)
	}
	n = 0
	err = r.Do(ctx, func(ctx context.Context, _ bool) error { n++; return activation.ErrConflict })
	if !errors.Is(err, activation.ErrConflict) || n != 1 {
		t.Fatalf("non-retryable: %d attempts, %v", n, err)
	}
	n = 0
	err = r.Do(ctx, func(ctx context.Context, _ bool) error { n++; <-ctx.Done(); return ctx.Err() })
	if !errors.Is(err, activation.ErrUnavailable) || n != 3 {
		t.Fatalf("timeouts: %d attempts, %v", n, err)
	}
}
