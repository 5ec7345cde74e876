package controllertest

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/seuss-go/seuss/activation"
)

// Reply is what the invoker double makes of one activation.
type Reply struct {
	Response activation.ActivationResponse
	Logs     []string
	// Shrink sends the blocking result as the bare activation id, as an invoker does
	// after RecordTooLargeException: the controller must read the record from the store.
	Shrink bool
	// Combined sends one CombinedCompletionAndResultMessage instead of result + completion.
	Combined bool
	// Drop sends nothing and stores nothing: the activation never completes.
	Drop bool
	// Delay holds the reply back.
	Delay time.Duration
}

// Invoker is a double of the invoker's wire behaviour: it consumes ActivationMessages
// from its topic and acks on completed{C} in the order of openwhisk-protocol.md §3.4,
// storing the record. It does not run anything: Respond decides the outcome.
type Invoker struct {
	Store   activation.Store
	Respond func(msg *activation.ActivationMessage) Reply
	// Messages receives every parsed message when non-nil (buffer it).
	Messages chan *activation.ActivationMessage
}

// Run consumes topic on brokers until ctx is done.
func (f *Invoker) Run(ctx context.Context, brokers []string, topic string) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RequiredAcks(kgo.LeaderAck()),
		kgo.DisableIdempotentWrite(),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	id := activation.NewInvokerInstanceID(0, 2048)
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var recs []*kgo.Record
		fetches.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		for _, r := range recs {
			var msg activation.ActivationMessage
			if err := json.Unmarshal(r.Value, &msg); err != nil {
				return fmt.Errorf("fake invoker: bad message: %w", err)
			}
			if f.Messages != nil {
				f.Messages <- &msg
			}
			go f.handle(ctx, cl, id, &msg)
		}
	}
}

func (f *Invoker) handle(ctx context.Context, cl *kgo.Client, id activation.InvokerInstanceID, msg *activation.ActivationMessage) {
	reply := f.Respond(msg)
	if reply.Drop {
		return
	}
	time.Sleep(reply.Delay)
	start := time.Now().UnixMilli()
	end := start + 3
	dur := end - start
	limits, _ := json.Marshal(activation.DefaultActionLimits())
	path, _ := json.Marshal(msg.Action.Path + "/" + msg.Action.Name)
	rec := &activation.WhiskActivation{
		Namespace: msg.User.Namespace.Name, Name: msg.Action.Name, Subject: msg.User.Subject,
		ActivationID: msg.ActivationID, Start: start, End: end, Response: reply.Response,
		Logs: reply.Logs, Version: msg.Action.Version, Annotations: []activation.KeyValue{
			{Key: "limits", Value: limits}, {Key: "path", Value: path},
			{Key: "kind", Value: json.RawMessage(`"nodejs:20"`)}, {Key: "timeout", Value: json.RawMessage("false")},
		},
		Duration: &dur,
	}
	if rec.Logs == nil {
		rec.Logs = []string{}
	}
	topic := "completed" + msg.RootControllerIndex.AsString
	send := func(v any) {
		b, _ := json.Marshal(v)
		cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: b})
	}
	full, _ := json.Marshal(rec)
	noLogs := *rec
	noLogs.Logs = []string{}
	withoutLogs, _ := json.Marshal(&noLogs)
	shrunk, _ := json.Marshal(msg.ActivationID)
	isSys := reply.Response.StatusCode == activation.StatusWhiskError
	completion := activation.CompletionMessage{TransID: msg.TransID, ActivationID: msg.ActivationID, IsSystemError: isSys, Instance: id}
	switch {
	case reply.Combined:
		resp := json.RawMessage(full)
		if reply.Shrink || !msg.Blocking {
			resp = shrunk
		}
		send(activation.CombinedCompletionAndResultMessage{TransID: msg.TransID, Response: resp, IsSystemError: isSys, Instance: id})
		f.Store.PutActivation(ctx, rec)
	case msg.Blocking:
		resp := json.RawMessage(withoutLogs)
		if reply.Shrink {
			resp = shrunk
		}
		send(activation.ResultMessage{TransID: msg.TransID, Response: resp})
		send(completion)
		f.Store.PutActivation(ctx, rec)
	default:
		f.Store.PutActivation(ctx, rec)
		send(completion)
	}
}
