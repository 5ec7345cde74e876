package bbolt

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/seuss-go/seuss/store/storetest"
)

// BenchmarkPutActivation measures record inserts from many goroutines, as the invoker
// writes them.
func BenchmarkPutActivation(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "seuss.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.PutActivation(context.Background(), storetest.Activation("guest", "hello", storetest.ActivationID(), 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPutActivationSequential: one record at a time, as at --parallel 1: every
// record is a transaction of its own.
func BenchmarkPutActivationSequential(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "seuss.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := s.PutActivation(context.Background(), storetest.Activation("guest", "hello", storetest.ActivationID(), 1)); err != nil {
			b.Fatal(err)
		}
	}
}
