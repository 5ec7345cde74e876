package kafka

import (
	"context"
	"log/slog"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// InvokerConfig is everything a Kafka-driven invoker needs; `invoker serve`,
// `invoker standalone` and the load generator's in-process mode all build one.
type InvokerConfig struct {
	Brokers      []string
	ID           int // N of invoker{N}
	UserMemoryMB int // default 2048
	// UniqueName and DisplayedName go into the InvokerInstanceId of pings and acks
	// (the stock invoker's --uniqueName and --displayedName); both optional.
	UniqueName, DisplayedName string

	Store    activation.Store
	Executor activation.Executor
	// Events publishes user events on "events" (CONFIG_whisk_userEvents_enabled).
	Events bool
	// Observer (e.g. *metrics.Metrics) gets lifecycle events; QueueDepth the number of
	// messages in flight. Both optional.
	Observer   activation.Observer
	QueueDepth func(int)
	Logger     *slog.Logger

	// Limits: zero means OpenWhisk's defaults.
	Limits activation.SystemLimits
	// RecordRetry, PingInterval, DrainTimeout: zero means the defaults (1 min, 1 s, 2 min).
	RecordRetry  time.Duration
	PingInterval time.Duration
	DrainTimeout time.Duration
	// AckRetry: how long an ack is retried before the message is left uncommitted; zero
	// means 5 min.
	AckRetry time.Duration
	// SessionTimeout of the consumer group; zero means 30 s.
	SessionTimeout time.Duration
}

// Invoker is an activation.Invoker fed by a Service: the whole invoker minus HTTP.
type Invoker struct {
	*activation.Invoker
	Service  *Service
	Producer *Producer
}

// NewInvoker wires the producer, the lifecycle and the consumer service.
func NewInvoker(cfg InvokerConfig) (*Invoker, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := NewProducer(cfg.Brokers, cfg.Logger)
	acfg := activation.Config{
		InstanceID:   cfg.ID,
		UserMemoryMB: cfg.UserMemoryMB,
		Store:        cfg.Store,
		Executor:     cfg.Executor,
		Acks:         p,
		Observer:     cfg.Observer,
		Logger:       cfg.Logger,
		Limits:       cfg.Limits,
		RecordRetry:  cfg.RecordRetry,
		AckRetry:     cfg.AckRetry,
	}
	if cfg.Events {
		acfg.Events = p
	}
	if cfg.UniqueName != "" || cfg.DisplayedName != "" {
		mem := cfg.UserMemoryMB
		if mem <= 0 {
			mem = 2048
		}
		id := activation.NewInvokerInstanceID(cfg.ID, mem)
		id.UniqueName, id.DisplayedName = cfg.UniqueName, cfg.DisplayedName
		acfg.Instance = &id
	}
	inv, err := activation.NewInvoker(acfg)
	if err != nil {
		p.Close()
		return nil, err
	}
	svc, err := NewService(ServiceConfig{
		Brokers:        cfg.Brokers,
		InstanceID:     cfg.ID,
		Instance:       inv.Instance(),
		Handler:        inv,
		Producer:       p,
		MaxInFlight:    inv.MaxConcurrent(),
		PingInterval:   cfg.PingInterval,
		DrainTimeout:   cfg.DrainTimeout,
		SessionTimeout: cfg.SessionTimeout,
		Observer:       cfg.QueueDepth,
		Logger:         cfg.Logger,
	})
	if err != nil {
		p.Close()
		return nil, err
	}
	// An ack waits for others only while other activations are in flight; alone, it
	// is written at once (the H path's latency).
	p.SetLinger(time.Millisecond, svc.InFlight)
	return &Invoker{Invoker: inv, Service: svc, Producer: p}, nil
}

// Run consumes and pings until ctx is done, drains running activations, then closes
// the producer.
func (i *Invoker) Run(ctx context.Context) error {
	err := i.Service.Run(ctx)
	if cerr := i.Producer.Close(); err == nil && cerr != nil {
		i.Service.log.Debug("closing producer", "err", cerr)
	}
	return err
}
