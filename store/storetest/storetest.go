// Package storetest is the test suite every store backend passes: Run it from the
// backend's tests with a constructor that opens a store against the real peer.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/store"
)

// Open returns a store for one subtest; the suite closes it. Subtests use namespaces of
// their own, so a constructor may return stores sharing one database.
type Open func(t *testing.T) store.Store

// Run runs the suite.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, ns string)
	}{
		{"Health", testHealth},
		{"ActionCreateGet", testActionCreateGet},
		{"ActionCreateConflict", testActionCreateConflict},
		{"ActionUpdateRevisions", testActionUpdateRevisions},
		{"ActionAttachment", testActionAttachment},
		{"ActionAttachmentToInline", testActionAttachmentToInline},
		{"ActionPackagedAndEscaped", testActionPackagedAndEscaped},
		{"ActionDelete", testActionDelete},
		{"ActionList", testActionList},
		{"ActivationInsertGet", testActivationInsertGet},
		{"ActivationNotFound", testActivationNotFound},
		{"ActivationList", testActivationList},
		{"ActivationConcurrentInsert", testActivationConcurrentInsert},
		{"ActivationLarge", testActivationLarge},
		{"ActionConcurrentUpdate", testActionConcurrentUpdate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, s, Namespace(t))
		})
	}
}

// Namespace returns a namespace unique to this run (with '@' and '.' as OpenWhisk
// namespaces may have, so that backends must escape ids).
func Namespace(t *testing.T) string {
	var b [4]byte
	rand.Read(b[:])
	return "ns" + hex.EncodeToString(b[:]) + "@example.com_dev"
}

// Ctx is a context bounded for one store call sequence.
func Ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Action returns a nodejs action document ready for PutAction.
func Action(ns, name string) *activation.WhiskAction {
	return &activation.WhiskAction{
		Namespace:   ns,
		Name:        name,
		Exec:        activation.Exec{Kind: "nodejs:20"},
		Parameters:  []activation.KeyValue{{Key: "greeting", Value: json.RawMessage(`"hi"`)}},
		Limits:      activation.DefaultActionLimits(),
		Version:     "0.0.1",
		Annotations: []activation.KeyValue{{Key: "provide-api-key", Value: json.RawMessage(`false`)}, {Key: "exec", Value: json.RawMessage(`"nodejs:20"`)}},
	}
}

// Activation returns a record of action ns/path started at start (ms).
func Activation(ns, path, id string, start int64) *activation.WhiskActivation {
	name := path[strings.LastIndexByte(path, '/')+1:]
	size := 27
	dur := int64(62)
	return &activation.WhiskActivation{
		Namespace: ns, Name: name, Subject: ns, ActivationID: id,
		Start: start, End: start + 62,
		Response: activation.ActivationResponse{StatusCode: 0, Result: json.RawMessage(`{"payload":"Hello, World!"}`), Size: &size},
		Logs:     []string{"2024-05-20T10:13:20.671233049Z stdout: hello World"},
		Version:  "0.0.1",
		Annotations: []activation.KeyValue{
			{Key: "path", Value: json.RawMessage(fmt.Sprintf("%q", ns+"/"+path))},
			{Key: "kind", Value: json.RawMessage(`"nodejs:20"`)},
			{Key: "waitTime", Value: json.RawMessage(`605`)},
		},
		Duration: &dur,
	}
}

// ActivationID returns a fresh 32-hex activation id.
func ActivationID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func mustIs(t *testing.T, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func readCode(t *testing.T, s store.Store, a *activation.WhiskAction) []byte {
	t.Helper()
	b, err := store.ReadCode(Ctx(t), s, a)
	must(t, err, "read code of "+a.ID)
	return b
}

func codeObject(t *testing.T, a *activation.WhiskAction) activation.Attachment {
	t.Helper()
	var att activation.Attachment
	must(t, json.Unmarshal(a.Exec.Code, &att), "exec.code as attachment object")
	return att
}

func testHealth(t *testing.T, s store.Store, ns string) {
	must(t, s.Health(Ctx(t)), "health")
}

func testActionCreateGet(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	code := []byte("function main(params) { return {payload: 'Hello, ' + params.name} }")
	a := Action(ns, "hello")
	rev, err := s.PutAction(ctx, a, code)
	must(t, err, "create")
	if rev == "" || a.Rev != rev || a.ID != ns+"/hello" || len(a.Exec.Code) == 0 {
		t.Fatalf("create: rev %q, a.Rev %q, a.ID %q, code %s", rev, a.Rev, a.ID, a.Exec.Code)
	}
	got, err := s.GetAction(ctx, ns+"/hello", "")
	must(t, err, "get latest")
	if got.ID != ns+"/hello" || got.Rev != rev || got.EntityType != "action" || got.Updated == 0 {
		t.Fatalf("get: id %q rev %q entityType %q updated %d", got.ID, got.Rev, got.EntityType, got.Updated)
	}
	if got.Namespace != ns || got.Name != "hello" || got.Exec.Kind != "nodejs:20" || got.Version != "0.0.1" ||
		got.Limits != activation.DefaultActionLimits() || len(got.Parameters) != 1 || len(got.Annotations) != 2 {
		t.Fatalf("get: fields differ: %+v", got)
	}
	att := codeObject(t, got)
	if !strings.HasPrefix(att.AttachmentName, "mem:") || att.Length == nil || *att.Length != int64(len(code)) ||
		!strings.HasPrefix(att.Digest, "sha256-") || att.AttachmentType != store.TextCodeType {
		t.Fatalf("inline code: %+v", att)
	}
	if !bytes.Equal(readCode(t, s, got), code) {
		t.Fatal("inline code does not round-trip")
	}
	got, err = s.GetAction(ctx, ns+"/hello", rev)
	must(t, err, "get at its revision")
	if got.Rev != rev {
		t.Fatalf("get at rev: %q", got.Rev)
	}
	_, err = s.GetAction(ctx, ns+"/nope", "")
	mustIs(t, err, activation.ErrNotFound, "get missing action")
}

func testActionCreateConflict(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	_, err := s.PutAction(ctx, Action(ns, "twice"), []byte("a"))
	must(t, err, "create")
	_, err = s.PutAction(ctx, Action(ns, "twice"), []byte("b"))
	mustIs(t, err, activation.ErrConflict, "create again")
	got, err := s.GetAction(ctx, ns+"/twice", "")
	must(t, err, "get")
	if string(readCode(t, s, got)) != "a" {
		t.Fatal("a refused create changed the document")
	}
}

func testActionUpdateRevisions(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	a := Action(ns, "upd")
	rev1, err := s.PutAction(ctx, a, []byte("v1"))
	must(t, err, "create")
	a.Limits.Memory = 512
	rev2, err := s.PutAction(ctx, a, []byte("v2"))
	must(t, err, "update")
	if rev2 == rev1 {
		t.Fatalf("update kept revision %q", rev1)
	}
	got, err := s.GetAction(ctx, ns+"/upd", rev2)
	must(t, err, "get at new rev")
	if got.Limits.Memory != 512 || string(readCode(t, s, got)) != "v2" {
		t.Fatalf("update not applied: memory %d", got.Limits.Memory)
	}
	_, err = s.GetAction(ctx, ns+"/upd", rev1)
	mustIs(t, err, activation.ErrRevisionMismatch, "get at old rev")

	stale := Action(ns, "upd")
	stale.Rev = rev1
	_, err = s.PutAction(ctx, stale, []byte("v3"))
	mustIs(t, err, activation.ErrConflict, "update at stale rev")

	// An update without code keeps the stored code.
	a.Rev = rev2
	a.Limits.Timeout = 1000
	rev3, err := s.PutAction(ctx, a, nil)
	must(t, err, "update without code")
	got, err = s.GetAction(ctx, ns+"/upd", rev3)
	must(t, err, "get rev3")
	if got.Limits.Timeout != 1000 || string(readCode(t, s, got)) != "v2" {
		t.Fatalf("update without code: timeout %d", got.Limits.Timeout)
	}
	missing := Action(ns, "never")
	missing.Rev = rev3
	_, err = s.PutAction(ctx, missing, []byte("x"))
	mustIs(t, err, activation.ErrConflict, "update of a missing action")
}

// bigCode is at least MaxInlineSize bytes, so it is stored as an attachment.
func bigCode(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "// line %d of a large action\n", i)
	}
	b.WriteString("function main() { return {ok: true} }\n")
	return b.Bytes()
}

func testActionAttachment(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	code := bigCode(store.MaxInlineSize)
	a := Action(ns, "big")
	rev, err := s.PutAction(ctx, a, code)
	must(t, err, "create")
	got, err := s.GetAction(ctx, ns+"/big", rev)
	must(t, err, "get")
	att := codeObject(t, got)
	if !strings.HasPrefix(att.AttachmentName, "couch:") || att.AttachmentType != store.TextCodeType {
		t.Fatalf("attachment code: %+v", att)
	}
	if !bytes.Equal(readCode(t, s, got), code) {
		t.Fatal("attachment does not round-trip")
	}
	_, err = s.GetAttachment(ctx, ns+"/big", "no-such-attachment")
	mustIs(t, err, activation.ErrNotFound, "missing attachment")

	// Binary code (a zip): raw bytes, octet-stream.
	zip := append([]byte("PK\x03\x04"), bigCode(40<<10)...)
	b := Action(ns, "zipped")
	b.Exec.Binary = true
	_, err = s.PutAction(ctx, b, zip)
	must(t, err, "create binary")
	got, err = s.GetAction(ctx, ns+"/zipped", "")
	must(t, err, "get binary")
	if att := codeObject(t, got); att.AttachmentType != store.BinaryCodeType || !got.Exec.Binary {
		t.Fatalf("binary code: %+v binary=%v", att, got.Exec.Binary)
	}
	if !bytes.Equal(readCode(t, s, got), zip) {
		t.Fatal("binary attachment does not round-trip")
	}
	// Just below the threshold stays inline.
	c := Action(ns, "edge")
	_, err = s.PutAction(ctx, c, bytes.Repeat([]byte("x"), store.MaxInlineSize-1))
	must(t, err, "create edge")
	got, err = s.GetAction(ctx, ns+"/edge", "")
	must(t, err, "get edge")
	if att := codeObject(t, got); !strings.HasPrefix(att.AttachmentName, "mem:") {
		t.Fatalf("%d bytes not inlined: %q", store.MaxInlineSize-1, att.AttachmentName[:10])
	}
}

func testActionAttachmentToInline(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	a := Action(ns, "shrinks")
	big := bigCode(20 << 10)
	_, err := s.PutAction(ctx, a, big)
	must(t, err, "create")
	// Update keeping the attachment, then replace it with a different large one, then
	// with inline code.
	_, err = s.PutAction(ctx, a, nil)
	must(t, err, "update without code")
	got, err := s.GetAction(ctx, ns+"/shrinks", a.Rev)
	must(t, err, "get")
	if !bytes.Equal(readCode(t, s, got), big) {
		t.Fatal("attachment lost by an update without code")
	}
	big2 := append(bigCode(30<<10), "// v2\n"...)
	_, err = s.PutAction(ctx, a, big2)
	must(t, err, "update with a new attachment")
	got, err = s.GetAction(ctx, ns+"/shrinks", a.Rev)
	must(t, err, "get")
	if !bytes.Equal(readCode(t, s, got), big2) {
		t.Fatal("new attachment not read back")
	}
	_, err = s.PutAction(ctx, a, []byte("small"))
	must(t, err, "update to inline")
	got, err = s.GetAction(ctx, ns+"/shrinks", a.Rev)
	must(t, err, "get")
	if string(readCode(t, s, got)) != "small" {
		t.Fatal("inline code after attachment not read back")
	}
}

func testActionPackagedAndEscaped(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	a := Action(ns+"/my pkg", "hello world@1")
	_, err := s.PutAction(ctx, a, bigCode(17<<10))
	must(t, err, "create packaged")
	id := ns + "/my pkg/hello world@1"
	got, err := s.GetAction(ctx, id, a.Rev)
	must(t, err, "get packaged")
	if got.ID != id || got.Namespace != ns+"/my pkg" {
		t.Fatalf("packaged: id %q namespace %q", got.ID, got.Namespace)
	}
	readCode(t, s, got)
	// Plain-string code (the health test action's form) is read as is.
	h := Action(ns, "health")
	h.Exec.Code = json.RawMessage(`"function main() { return {} }"`)
	_, err = s.PutAction(ctx, h, nil)
	must(t, err, "create with string code")
	got, err = s.GetAction(ctx, ns+"/health", "")
	must(t, err, "get string code")
	if string(readCode(t, s, got)) != "function main() { return {} }" {
		t.Fatalf("string code: %s", got.Exec.Code)
	}
}

func testActionDelete(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	a := Action(ns, "gone")
	rev1, err := s.PutAction(ctx, a, bigCode(20<<10))
	must(t, err, "create")
	stored, err := s.GetAction(ctx, ns+"/gone", rev1)
	must(t, err, "get")
	name := store.CodeAttachment(stored)
	if name == "" {
		t.Fatalf("no attachment name in %s", stored.Exec.Code)
	}
	_, err = s.PutAction(ctx, a, nil)
	must(t, err, "update")
	mustIs(t, s.DeleteAction(ctx, ns+"/gone", rev1), activation.ErrConflict, "delete at stale rev")
	must(t, s.DeleteAction(ctx, ns+"/gone", a.Rev), "delete")
	_, err = s.GetAction(ctx, ns+"/gone", "")
	mustIs(t, err, activation.ErrNotFound, "get deleted")
	_, err = s.GetAttachment(ctx, ns+"/gone", name)
	mustIs(t, err, activation.ErrNotFound, "attachment of a deleted action")
	mustIs(t, s.DeleteAction(ctx, ns+"/gone", ""), activation.ErrNotFound, "delete again")
	// The name can be created anew.
	b := Action(ns, "gone")
	_, err = s.PutAction(ctx, b, []byte("again"))
	must(t, err, "recreate")
	must(t, s.DeleteAction(ctx, ns+"/gone", ""), "delete latest")
}

func testActionList(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	// A namespace that ns is a prefix of must not leak in.
	other := ns + "x"
	_, err := s.PutAction(ctx, Action(other, "a1"), []byte("x"))
	must(t, err, "create in other namespace")
	names := []struct{ ns, name string }{{ns, "a1"}, {ns + "/pkg", "a2"}, {ns, "a3"}, {ns, "a4"}}
	for _, n := range names {
		_, err := s.PutAction(ctx, Action(n.ns, n.name), []byte("x"))
		must(t, err, "create "+n.name)
		time.Sleep(5 * time.Millisecond) // distinct "updated"
	}
	// Updating a1 makes it the newest.
	a1, err := s.GetAction(ctx, ns+"/a1", "")
	must(t, err, "get a1")
	_, err = s.PutAction(ctx, a1, nil)
	must(t, err, "update a1")
	ids := func(as []*activation.WhiskAction) string {
		var xs []string
		for _, a := range as {
			xs = append(xs, strings.TrimPrefix(a.ID, ns+"/"))
		}
		return strings.Join(xs, ",")
	}
	all, err := s.ListActions(ctx, ns, 0, 0)
	must(t, err, "list")
	if got, want := ids(all), "a1,a4,a3,pkg/a2"; got != want {
		t.Fatalf("list: %s, want %s", got, want)
	}
	page, err := s.ListActions(ctx, ns, 1, 2)
	must(t, err, "list page")
	if got, want := ids(page), "a4,a3"; got != want {
		t.Fatalf("list skip 1 limit 2: %s, want %s", got, want)
	}
	none, err := s.ListActions(ctx, ns+"-empty", 0, 0)
	must(t, err, "list empty namespace")
	if len(none) != 0 {
		t.Fatalf("empty namespace lists %d", len(none))
	}
}

func activationJSON(t *testing.T, a *activation.WhiskActivation) string {
	b, err := json.Marshal(a)
	must(t, err, "marshal")
	return string(b)
}

func testActivationInsertGet(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	id := ActivationID()
	a := Activation(ns, "hello", id, time.Now().UnixMilli())
	must(t, s.PutActivation(ctx, a), "insert")
	got, err := s.GetActivation(ctx, ns, id)
	must(t, err, "get")
	if g, w := activationJSON(t, got), activationJSON(t, a); g != w {
		t.Fatalf("record differs:\n got %s\nwant %s", g, w)
	}
	b := Activation(ns, "other", id, a.Start+1)
	mustIs(t, s.PutActivation(ctx, b), activation.ErrConflict, "insert same id")
	got, err = s.GetActivation(ctx, ns, id)
	must(t, err, "get after conflict")
	if got.Name != "hello" {
		t.Fatal("a refused insert changed the record")
	}
	// Error results and a cause survive too.
	c := Activation(ns, "pkg/failing", ActivationID(), a.Start)
	c.Response = activation.ActivationResponse{StatusCode: activation.StatusDeveloperError, Result: json.RawMessage(`{"error":"The action exceeded its time limits of 100 milliseconds."}`)}
	c.Cause = ActivationID()
	c.Duration = nil
	c.Logs = []string{}
	must(t, s.PutActivation(ctx, c), "insert failed record")
	got, err = s.GetActivation(ctx, ns, c.ActivationID)
	must(t, err, "get failed record")
	if g, w := activationJSON(t, got), activationJSON(t, c); g != w {
		t.Fatalf("record differs:\n got %s\nwant %s", g, w)
	}
}

func testActivationNotFound(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	_, err := s.GetActivation(ctx, ns, ActivationID())
	mustIs(t, err, activation.ErrNotFound, "get missing record")
	id := ActivationID()
	must(t, s.PutActivation(ctx, Activation(ns, "hello", id, 1000)), "insert")
	_, err = s.GetActivation(ctx, ns+"x", id)
	mustIs(t, err, activation.ErrNotFound, "get record from another namespace")
}

func testActivationList(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	// Seven hours apart: the records span several days (backends that index by day).
	const step = int64(7 * time.Hour / time.Millisecond)
	base := time.Now().Add(-100 * time.Hour).Truncate(time.Second).UnixMilli()
	var want []*activation.WhiskActivation
	for i := 0; i < 12; i++ {
		path := "hello"
		if i%3 == 1 {
			path = "pkg/world"
		}
		a := Activation(ns, path, ActivationID(), base+int64(i)*step)
		must(t, s.PutActivation(ctx, a), "insert")
		want = append(want, a)
	}
	// Same start as record 11: ordered by id then.
	tie := Activation(ns, "hello", ActivationID(), base+11*step)
	must(t, s.PutActivation(ctx, tie), "insert tie")
	want = append(want, tie)
	must(t, s.PutActivation(ctx, Activation(ns+"x", "hello", ActivationID(), base)), "insert other namespace")
	store.SortActivations(want)

	check := func(q store.ActivationQuery, exp []*activation.WhiskActivation) {
		t.Helper()
		got, err := s.ListActivations(ctx, q)
		must(t, err, "list")
		var g, w []string
		for _, a := range got {
			g = append(g, a.ActivationID[:6])
		}
		for _, a := range exp {
			w = append(w, a.ActivationID[:6])
		}
		if strings.Join(g, ",") != strings.Join(w, ",") {
			t.Fatalf("list %+v:\n got %v\nwant %v", q, g, w)
		}
	}
	filter := func(f func(a *activation.WhiskActivation) bool) []*activation.WhiskActivation {
		var out []*activation.WhiskActivation
		for _, a := range want {
			if f(a) {
				out = append(out, a)
			}
		}
		return out
	}
	check(store.ActivationQuery{Namespace: ns}, want)
	check(store.ActivationQuery{Namespace: ns, Limit: 5}, want[:5])
	check(store.ActivationQuery{Namespace: ns, Skip: 3, Limit: 4}, want[3:7])
	check(store.ActivationQuery{Namespace: ns, Skip: 20}, nil)
	check(store.ActivationQuery{Namespace: ns, Name: "pkg/world"}, filter(func(a *activation.WhiskActivation) bool { return a.Name == "world" }))
	check(store.ActivationQuery{Namespace: ns, Name: "hello", Skip: 1, Limit: 2}, filter(func(a *activation.WhiskActivation) bool { return a.Name == "hello" })[1:3])
	since, upto := time.UnixMilli(base+3*step), time.UnixMilli(base+7*step)
	inRange := filter(func(a *activation.WhiskActivation) bool { return a.Start >= base+3*step && a.Start <= base+7*step })
	if len(inRange) != 5 {
		t.Fatalf("test set-up: %d in range", len(inRange))
	}
	check(store.ActivationQuery{Namespace: ns, Since: since, Upto: upto}, inRange)
	check(store.ActivationQuery{Namespace: ns, Since: since}, filter(func(a *activation.WhiskActivation) bool { return a.Start >= base+3*step }))
	check(store.ActivationQuery{Namespace: ns, Upto: upto, Limit: 2}, filter(func(a *activation.WhiskActivation) bool { return a.Start <= base+7*step })[:2])
	check(store.ActivationQuery{Namespace: ns, Name: "hello", Since: since, Upto: upto, Skip: 1}, filter(func(a *activation.WhiskActivation) bool {
		return a.Name == "hello" && a.Start >= base+3*step && a.Start <= base+7*step
	})[1:])
	check(store.ActivationQuery{Namespace: ns + "-none"}, nil)
}

// Many writers at once: distinct records all land; of several inserts of one id,
// exactly one wins (the invoker relies on this to never record an activation twice).
func testActivationConcurrentInsert(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	ids := make([]string, writers)
	for i := range writers {
		ids[i] = ActivationID()
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.PutActivation(ctx, Activation(ns, "hello", ids[i], int64(1000+i)))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		must(t, err, "concurrent insert "+ids[i])
	}
	same := ActivationID()
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.PutActivation(ctx, Activation(ns, fmt.Sprintf("writer%d", i), same, 5000))
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, activation.ErrConflict):
		default:
			t.Fatalf("insert of one id: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d inserts of one id succeeded, want 1", won)
	}
	list, err := s.ListActivations(ctx, store.ActivationQuery{Namespace: ns})
	must(t, err, "list")
	if len(list) != writers+1 {
		t.Fatalf("listed %d records, want %d", len(list), writers+1)
	}
}

// A record with a megabyte of logs and a large result round-trips.
func testActivationLarge(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	a := Activation(ns, "chatty", ActivationID(), 1000)
	line := "2024-05-20T10:13:20.671233049Z stdout: " + strings.Repeat("x", 1000)
	a.Logs = nil
	for range 1024 {
		a.Logs = append(a.Logs, line)
	}
	a.Response.Result = json.RawMessage(`{"payload":"` + strings.Repeat("y", 512<<10) + `"}`)
	must(t, s.PutActivation(ctx, a), "insert large record")
	got, err := s.GetActivation(ctx, ns, a.ActivationID)
	must(t, err, "get large record")
	if activationJSON(t, got) != activationJSON(t, a) {
		t.Fatal("large record differs")
	}
}

// Two updates from the same revision: one wins, the other is a conflict.
func testActionConcurrentUpdate(t *testing.T, s store.Store, ns string) {
	ctx := Ctx(t)
	a := Action(ns, "raced")
	rev, err := s.PutAction(ctx, a, []byte("v1"))
	must(t, err, "create")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := Action(ns, "raced")
			b.Rev = rev
			_, errs[i] = s.PutAction(ctx, b, []byte(fmt.Sprintf("v2-%d", i)))
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, activation.ErrConflict):
		default:
			t.Fatalf("concurrent update: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent updates from one revision succeeded, want 1", won)
	}
}
