package couchdb

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/seuss-go/seuss/activation"

	"github.com/seuss-go/seuss/store"
	"github.com/seuss-go/seuss/store/internal/peers"
	"github.com/seuss-go/seuss/store/storetest"
)

func openPouch(t *testing.T, p *peers.Pouch, prefix string) *Store {
	t.Helper()
	return openPouchConfig(t, Config{
		Protocol: "http", Host: "127.0.0.1", Port: p.Port,
		Username: peers.AdminUser, Password: peers.AdminPassword,
		WhisksDB: prefix + "whisks", ActivationsDB: prefix + "activations",
	})
}

func openPouchConfig(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSuite(t *testing.T) {
	p := peers.StartPouch(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openPouch(t, p, "local_") })
}

// Records written one PUT each (Config.NoBatching) pass too.
func TestSuiteUnbatched(t *testing.T) {
	p := peers.StartPouch(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return openPouchConfig(t, Config{
			Host: "127.0.0.1", Port: p.Port, Username: peers.AdminUser, Password: peers.AdminPassword,
			WhisksDB: "one_whisks", ActivationsDB: "one_activations", NoBatching: true,
		})
	})
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{
		"CONFIG_whisk_couchdb_protocol": "http", "CONFIG_whisk_couchdb_host": "db.docker",
		"CONFIG_whisk_couchdb_port": "5984", "CONFIG_whisk_couchdb_username": "whisk_admin",
		"CONFIG_whisk_couchdb_password": "some_passw0rd", "CONFIG_whisk_couchdb_provider": "CouchDB",
		"CONFIG_whisk_couchdb_databases_WhiskActivation": "local_activations",
		"DB_PREFIX": "local_",
	}
	c, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Host != "db.docker" || c.Port != 5984 || c.Username != "whisk_admin" || c.Password != "some_passw0rd" ||
		c.WhisksDB != "local_whisks" || c.ActivationsDB != "local_activations" || c.Provider != "CouchDB" {
		t.Fatalf("%+v", c)
	}
	env["CONFIG_whisk_couchdb_port"] = "x"
	if _, err := ConfigFromEnv(func(k string) string { return env[k] }); err == nil {
		t.Fatal("bad port accepted")
	}
}

// Wrong credentials are a configuration error, not an outage to wait out.
func TestWrongPassword(t *testing.T) {
	p := peers.StartPouch(t)
	_, err := Open(context.Background(), Config{
		Host: "127.0.0.1", Port: p.Port, Username: peers.AdminUser, Password: "wrong",
		WhisksDB: "w_whisks", ActivationsDB: "w_activations",
	})
	if err == nil || errors.Is(err, activation.ErrUnavailable) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("open with a wrong password: %v", err)
	}
}

// Nothing listening: Open fails as unavailable, after its retries.
func TestNoServer(t *testing.T) {
	_, err := Open(context.Background(), Config{
		Host: "127.0.0.1", Port: peers.FreePort(t), Username: "u", Password: "p",
		WhisksDB: "w", ActivationsDB: "a",
		Retry: store.Retry{Attempts: 2, Timeout: time.Second, Backoff: 10 * time.Millisecond},
	})
	if !errors.Is(err, activation.ErrUnavailable) {
		t.Fatalf("open without a server: %v", err)
	}
}
