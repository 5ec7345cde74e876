package couchdb

import (
	"context"
	"testing"

	"github.com/seuss-go/seuss/store/internal/peers"
	"github.com/seuss-go/seuss/store/storetest"
)

// BenchmarkPutActivation measures record inserts from many goroutines against
// pouchdb-server (in memory; a real CouchDB differs).
func BenchmarkPutActivation(b *testing.B) {
	p := peers.StartPouch(b)
	s, err := Open(context.Background(), Config{
		Host: "127.0.0.1", Port: p.Port, Username: peers.AdminUser, Password: peers.AdminPassword,
		WhisksDB: "bench_whisks", ActivationsDB: "bench_activations",
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.PutActivation(context.Background(), storetest.Activation("guest", "hello", storetest.ActivationID(), 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
