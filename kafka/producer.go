package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/seuss-go/seuss/activation"
)

// Producer sends the invoker's messages: acks on completed{C}, pings on health, user
// events on events. It implements activation.AckSender and activation.EventSender.
//
// Every write waits for the partition leader (RequireOne, OpenWhisk's acks=1): kafka-go's
// default RequireNone would drop an oversize message without telling anyone.
type Producer struct {
	w   *kafkago.Writer
	log *slog.Logger
}

var (
	_ activation.AckSender   = (*Producer)(nil)
	_ activation.EventSender = (*Producer)(nil)
)

// NewProducer returns a producer writing to brokers. logger may be nil.
func NewProducer(brokers []string, logger *slog.Logger) *Producer {
	if logger == nil {
		logger = slog.Default()
	}
	return &Producer{
		w: &kafkago.Writer{
			Addr:         kafkago.TCP(brokers...),
			Balancer:     &kafkago.LeastBytes{},
			RequiredAcks: kafkago.RequireOne,
			// OpenWhisk's ack producer max.request.size is MAX_ACTIVATION_LIMIT; a little
			// is kept for the record batch's own overhead, so that a batch of several acks
			// is never refused by a broker whose max.message.bytes is that limit.
			BatchBytes:   MaxMessageBytes - 512,
			BatchTimeout: time.Millisecond,
			MaxAttempts:  3,
			WriteTimeout: 10 * time.Second,
			ReadTimeout:  10 * time.Second,
		},
		log: logger,
	}
}

// Close flushes and closes the producer.
func (p *Producer) Close() error { return p.w.Close() }

// Send writes one message to topic and waits for the leader's ack. A message the
// client or the broker refuses as too large returns an error wrapping
// activation.ErrAckTooLarge.
func (p *Producer) Send(ctx context.Context, topic string, value []byte) error {
	err := p.w.WriteMessages(ctx, kafkago.Message{Topic: topic, Value: value})
	if err == nil {
		return nil
	}
	if isTooLarge(err) {
		return fmt.Errorf("kafka: send %d bytes to %s: %w: %v", len(value), topic, activation.ErrAckTooLarge, err)
	}
	return fmt.Errorf("kafka: send to %s: %w", topic, err)
}

func isTooLarge(err error) bool {
	var we kafkago.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil && isTooLarge(e) {
				return true
			}
		}
		return false
	}
	return errors.Is(err, kafkago.MessageSizeTooLarge)
}

// SendAck implements activation.AckSender: topic "completed" + controller.
func (p *Producer) SendAck(ctx context.Context, controller string, ack activation.Ack) error {
	b, err := activation.Marshal(ack)
	if err != nil {
		return fmt.Errorf("kafka: encode %s ack: %w", activation.AckKind(ack), err)
	}
	return p.Send(ctx, CompletedTopic(controller), b)
}

// SendEvent implements activation.EventSender: topic "events".
func (p *Producer) SendEvent(ctx context.Context, ev *activation.EventMessage) error {
	b, err := activation.Marshal(ev)
	if err != nil {
		return err
	}
	return p.Send(ctx, EventsTopic, b)
}

// SendPing writes a PingMessage on health.
func (p *Producer) SendPing(ctx context.Context, id activation.InvokerInstanceID, enabled bool) error {
	b, err := json.Marshal(activation.PingMessage{Name: id, IsEnabled: &enabled})
	if err != nil {
		return err
	}
	return p.Send(ctx, HealthTopic, b)
}
