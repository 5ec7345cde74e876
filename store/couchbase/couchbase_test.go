package couchbase

import (
	"context"
	"testing"
	"time"

	"github.com/seuss-go/seuss/store"
	"github.com/seuss-go/seuss/store/internal/peers"
	"github.com/seuss-go/seuss/store/storetest"
)

func openCaves(t *testing.T, c *peers.Caves) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{
		ConnStr: c.ConnStr, Username: "Administrator", Password: "password", Bucket: "default",
		Retry: store.Retry{Attempts: 3, Timeout: 5 * time.Second, Backoff: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSuite(t *testing.T) {
	c := peers.StartCaves(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openCaves(t, c) })
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{"COUCHBASE_CONNSTR": "couchbase://db", "COUCHBASE_USERNAME": "u", "COUCHBASE_PASSWORD": "p"}
	c := ConfigFromEnv(func(k string) string { return env[k] })
	if c.ConnStr != "couchbase://db" || c.Username != "u" || c.Password != "p" || c.Bucket != "openwhisk" || c.Scope != "" {
		t.Fatalf("%+v", c)
	}
}
