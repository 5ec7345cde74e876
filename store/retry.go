package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// Retry bounds one remote operation: each attempt has its own timeout, and attempts
// that fail with activation.ErrUnavailable are repeated after a growing pause.
type Retry struct {
	Attempts int           // total attempts; <= 0 means 3
	Timeout  time.Duration // per attempt; <= 0 means 5 s
	Backoff  time.Duration // first pause, doubled each time; <= 0 means 100 ms
}

// DefaultRetry is what backends use unless configured otherwise.
var DefaultRetry = Retry{Attempts: 3, Timeout: 5 * time.Second, Backoff: 100 * time.Millisecond}

// Do runs op until it succeeds, fails with an error other than ErrUnavailable, or the
// attempts or ctx run out. An attempt that hits its own timeout counts as unavailable.
// retried tells op whether an earlier attempt may have taken effect.
func (r Retry) Do(ctx context.Context, op func(ctx context.Context, retried bool) error) error {
	attempts, timeout, pause := r.Attempts, r.Timeout, r.Backoff
	if attempts <= 0 {
		attempts = 3
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if pause <= 0 {
		pause = 100 * time.Millisecond
	}
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w (%v)", err, ctx.Err())
			case <-t.C:
			}
			pause *= 2
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		err = op(actx, i > 0)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			if !errors.Is(err, activation.ErrUnavailable) {
				err = fmt.Errorf("%w: %w", activation.ErrUnavailable, err)
			}
			return err
		}
		if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, activation.ErrUnavailable) {
			err = fmt.Errorf("%w: timed out after %v: %w", activation.ErrUnavailable, timeout, err)
		}
		if !errors.Is(err, activation.ErrUnavailable) {
			return err
		}
	}
	return err
}
