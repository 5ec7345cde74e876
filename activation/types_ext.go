package activation

import (
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
