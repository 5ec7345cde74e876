package activation

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// UnmarshalJSON fills the limits a document leaves out with OpenWhisk's defaults
// (Limits.scala: logs and concurrency are optional on reading).
func (l *ActionLimits) UnmarshalJSON(b []byte) error {
	type plain ActionLimits
	p := plain(DefaultActionLimits())
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*l = ActionLimits(p)
	return nil
}

// String is the instance's name as a controller lists it (GET /invokers):
// "invoker<N>[/uniqueName][/displayedName]" (InstanceId.scala toString).
func (i InvokerInstanceID) String() string {
	s := "invoker" + strconv.Itoa(i.Instance)
	if i.UniqueName != "" {
		s += "/" + i.UniqueName
	}
	if i.DisplayedName != "" {
		s += "/" + i.DisplayedName
	}
	return s
}

// Marshal is json.Marshal without HTML escaping: spray-json writes '<', '>' and '&' as
// they are, and so must acks and records (Go would write \u003c etc.).
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
