package controller

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaBus is the controller's Kafka client: it publishes ActivationMessages and reads
// the acks on completed{C}, with the producer settings of OpenWhisk's
// KafkaProducerConnector (acks=1, no key) (openwhisk-protocol.md §1.4).
type KafkaBus struct {
	cl       *kgo.Client
	ackTopic string
}

var _ Bus = (*KafkaBus)(nil)

// TopicMaxMessageBytes is max.message.bytes of invoker{N} and completed{C}
// (ActivationEntityLimit.MAX_ACTIVATION_LIMIT).
const TopicMaxMessageBytes = maxMessageBytes

// DialKafka connects to brokers, makes sure the topics a controller and its invoker
// use exist (completed{controllerID}, health, and each of invokerTopics: one
// partition, as ensureTopic creates them). Run reads acks and pings from the start of
// completed{controllerID} and health.
func DialKafka(ctx context.Context, brokers []string, controllerID string, invokerTopics ...string) (*KafkaBus, error) {
	ackTopic := "completed" + controllerID
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ClientID("controller"+controllerID),
		kgo.RequiredAcks(kgo.LeaderAck()),
		kgo.DisableIdempotentWrite(),
		kgo.ProducerBatchMaxBytes(TopicMaxMessageBytes),
		kgo.ProducerLinger(0),
		kgo.ConsumeTopics(ackTopic, HealthTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return nil, fmt.Errorf("controller: kafka client: %w", err)
	}
	adm := kadm.NewClient(cl)
	maxBytes := strconv.Itoa(TopicMaxMessageBytes)
	topics := map[string]map[string]*string{
		ackTopic:    {"max.message.bytes": &maxBytes},
		HealthTopic: nil,
	}
	for _, t := range invokerTopics {
		topics[t] = map[string]*string{"max.message.bytes": &maxBytes}
	}
	for t, cfg := range topics {
		resp, err := adm.CreateTopic(ctx, 1, 1, cfg, t)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			cl.Close()
			return nil, fmt.Errorf("controller: create topic %s: %w", t, err)
		}
	}
	return &KafkaBus{cl: cl, ackTopic: ackTopic}, nil
}

// Publish implements Bus: one record without key, acknowledged by the leader.
func (k *KafkaBus) Publish(ctx context.Context, topic string, value []byte) error {
	return k.cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).FirstErr()
}

// Run reads acks from completed{C} and pings from health until ctx is done and hands
// them to s (HandleAck, HandlePing). Errors of the handlers go to logf and do not stop
// the loop.
func (k *KafkaBus) Run(ctx context.Context, s *Server, logf func(string, ...any)) error {
	for {
		fetches := k.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				logf("controller: fetch %s[%d]: %v", t, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			var err error
			if r.Topic == HealthTopic {
				err = s.HandlePing(r.Value)
			} else {
				err = s.HandleAck(r.Value)
			}
			if err != nil {
				logf("%v", err)
			}
		})
	}
}

// Close closes the client.
func (k *KafkaBus) Close() { k.cl.Close() }
