package couchdb

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/seuss-go/seuss/store"
	"github.com/seuss-go/seuss/store/internal/peers"
	"github.com/seuss-go/seuss/store/storetest"
)

// rawGet reads a path from the server as the controller would, with basic auth.
func rawGet(t *testing.T, p *peers.Pouch, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.URL()+path, nil)
	req.SetBasicAuth(peers.AdminUser, peers.AdminPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The documents are where and as OpenWhisk's controller reads them.
func TestLayout(t *testing.T) {
	p := peers.StartPouch(t)
	s := openPouch(t, p, "local_")
	ctx := context.Background()

	a := storetest.Action("guest", "big")
	code := []byte(strings.Repeat("x", 20<<10))
	if _, err := s.PutAction(ctx, a, code); err != nil {
		t.Fatal(err)
	}
	status, body := rawGet(t, p, "/local_whisks/guest%2Fbig")
	if status != 200 {
		t.Fatalf("action document: %d %s", status, body)
	}
	var doc struct {
		ID         string `json:"_id"`
		Rev        string `json:"_rev"`
		EntityType string `json:"entityType"`
		Updated    int64  `json:"updated"`
		Exec       struct {
			Code struct{ AttachmentName, AttachmentType string }
		}
		Attachments map[string]struct {
			ContentType string `json:"content_type"`
			Length      int    `json:"length"`
			Stub        bool   `json:"stub"`
		} `json:"_attachments"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(doc.Exec.Code.AttachmentName, "couch:")
	att, ok := doc.Attachments[name]
	if doc.ID != "guest/big" || doc.EntityType != "action" || doc.Updated == 0 || doc.Rev != a.Rev ||
		!ok || !att.Stub || att.Length != len(code) || !strings.HasPrefix(att.ContentType, "text/plain") ||
		!strings.HasPrefix(doc.Rev, "2-") {
		t.Fatalf("action document: %s", body)
	}
	if status, b := rawGet(t, p, "/local_whisks/guest%2Fbig/"+name); status != 200 || len(b) != len(code) {
		t.Fatalf("attachment: %d, %d bytes", status, len(b))
	}

	rec := storetest.Activation("guest", "big", storetest.ActivationID(), 1716200000640)
	if err := s.PutActivation(ctx, rec); err != nil {
		t.Fatal(err)
	}
	status, body = rawGet(t, p, "/local_activations/guest%2F"+rec.ActivationID)
	var m map[string]any
	json.Unmarshal(body, &m)
	if status != 200 || m["_id"] != "guest/"+rec.ActivationID || m["entityType"] != "activation" || m["updated"] == nil ||
		m["activationId"] != rec.ActivationID || m["start"] != float64(1716200000640) || m["namespace"] != "guest" {
		t.Fatalf("activation document: %d %s", status, body)
	}
}

// A database that disappears (an in-memory server restarted) is created again.
func TestRecreatesDatabases(t *testing.T) {
	p := peers.StartPouch(t)
	s := openPouch(t, p, "gone_")
	ctx := context.Background()
	p.Kill()
	p.Start()
	rec := storetest.Activation("guest", "x", storetest.ActivationID(), 1)
	if err := s.PutActivation(ctx, rec); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListActivations(ctx, store.ActivationQuery{Namespace: "guest"})
	if err != nil || len(list) != 1 {
		t.Fatalf("list after restart: %d, %v", len(list), err)
	}
}
