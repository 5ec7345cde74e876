package standalone

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/seuss-go/seuss/activation"
	"github.com/seuss-go/seuss/kafka"
	"github.com/seuss-go/seuss/store/bbolt"
)

// startInvoker starts invoker 0 as `invoker serve` does: the activation lifecycle over
// db and exec, acking through a Kafka producer, fed by the consumer of invoker0 (group
// invoker0), pinging health every second.
func startInvoker(ctx context.Context, g *errgroup.Group, cfg Config, brokers []string, db *bbolt.Store, exec activation.Executor) error {
	prod := kafka.NewProducer(brokers, cfg.Logger)
	inv, err := activation.NewInvoker(activation.Config{
		InstanceID:   0,
		UserMemoryMB: cfg.UserMemoryMB,
		Store:        db,
		Executor:     exec,
		Acks:         prod,
		Logger:       cfg.Logger,
	})
	if err != nil {
		prod.Close()
		return fmt.Errorf("standalone: invoker: %w", err)
	}
	svc, err := kafka.NewService(kafka.ServiceConfig{
		Brokers:     brokers,
		InstanceID:  0,
		Instance:    inv.Instance(),
		Handler:     inv,
		Producer:    prod,
		MaxInFlight: inv.MaxConcurrent(),
		Logger:      cfg.Logger,
	})
	if err != nil {
		prod.Close()
		return fmt.Errorf("standalone: invoker: %w", err)
	}
	g.Go(func() error {
		defer prod.Close()
		return svc.Run(ctx)
	})
	return nil
}
