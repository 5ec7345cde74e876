package runtimes

import (
	"bytes"
	"encoding/json"

	"github.com/seuss-go/seuss/activation"
)

// EncodeLine is v as one compact JSON line, HTML characters unescaped (as sent).
func EncodeLine(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// EncodeInit is the init request line: {"value":<the init message>}.
func EncodeInit(m *activation.InitMessage) ([]byte, error) {
	return EncodeLine(struct {
		Value *activation.InitMessage `json:"value"`
	}{m})
}

// EncodeRun is the run request line. The parameters are spliced in as they are
// (compacted only if they span lines): re-encoding a 1 MB value costs milliseconds.
func EncodeRun(r *activation.RunMessage) ([]byte, error) {
	value := bytes.TrimSpace(r.Value)
	if len(value) == 0 {
		value = []byte("{}")
	}
	if bytes.IndexByte(value, '\n') >= 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, value); err != nil {
			return nil, err
		}
		value = b.Bytes()
	}
	ctx, err := EncodeLine(struct {
		Namespace     string `json:"namespace"`
		ActionName    string `json:"action_name"`
		ActionVersion string `json:"action_version"`
		ActivationID  string `json:"activation_id"`
		TransactionID string `json:"transaction_id"`
		Deadline      string `json:"deadline"`
		APIKey        string `json:"api_key,omitempty"`
	}{r.Namespace, r.ActionName, r.ActionVersion, r.ActivationID, r.TransactionID, r.Deadline, r.APIKey})
	if err != nil {
		return nil, err
	}
	line := make([]byte, 0, len(value)+len(ctx)+16)
	line = append(line, `{"value":`...)
	line = append(line, value...)
	line = append(line, ',')
	return append(line, ctx[1:]...), nil
}
