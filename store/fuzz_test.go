package store

import (
	"context"
	"testing"

	"github.com/seuss-go/seuss/activation"
)

// Documents read back from a database are parsed without panicking, whatever they hold.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"_id":"guest/hello","_rev":"1-a","entityType":"action","namespace":"guest","name":"hello","exec":{"kind":"nodejs:20","code":{"attachmentName":"mem:aGk=","length":2}},"limits":{"timeout":1,"memory":1}}`))
	f.Add([]byte(`{"_id":"guest/x","entityType":"activation","namespace":"guest","activationId":"x","start":1,"response":{"statusCode":0},"annotations":[{"key":"path","value":"guest/x"}]}`))
	f.Add([]byte(`{"exec":{"code":"plain"}}`))
	f.Add([]byte(`{"exec":{"code":{"attachmentName":"couch:"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, err := DecodeAction(b); err == nil {
			CodeAttachment(a)
			ReadCode(context.Background(), noAttachments{}, a)
		}
		if r, err := DecodeActivation(b); err == nil {
			ActivationPath(r)
			ActivationQuery{Namespace: r.Namespace, Name: "x"}.Matches(r)
		}
	})
}

type noAttachments struct{ activation.Store }

func (noAttachments) GetAttachment(ctx context.Context, docID, name string) ([]byte, error) {
	return nil, activation.ErrNotFound
}
