package controller

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/seuss-go/seuss/activation"
)

// HealthTopic is where invokers ping every second (openwhisk-protocol.md §3.2).
const HealthTopic = "health"

// pingTimeout is how long an invoker stays "up" after its last ping: the controller's
// InvokerSupervision marks it Offline after 10 s without one.
const pingTimeout = 10 * time.Second

type invokerHealth struct {
	id       activation.InvokerInstanceID
	lastPing time.Time
	enabled  bool
}

// invokerName is InvokerInstanceId.toString, the key of GET /invokers:
// invoker<N>[/uniqueName][/displayedName].
func invokerName(id activation.InvokerInstanceID) string {
	s := fmt.Sprintf("invoker%d", id.Instance)
	if id.UniqueName != "" {
		s += "/" + id.UniqueName
	}
	if id.DisplayedName != "" {
		s += "/" + id.DisplayedName
	}
	return s
}

// HandlePing processes one PingMessage from the health topic.
func (s *Server) HandlePing(value []byte) error {
	var p activation.PingMessage
	if err := json.Unmarshal(value, &p); err != nil {
		return fmt.Errorf("controller: ping: %w", err)
	}
	if p.Name.InstanceType != "" && p.Name.InstanceType != "invoker" {
		return fmt.Errorf("controller: ping from a %q", p.Name.InstanceType)
	}
	s.healthMu.Lock()
	s.invokers[p.Name.Instance] = &invokerHealth{id: p.Name, lastPing: time.Now(), enabled: p.IsEnabled == nil || *p.IsEnabled}
	s.healthMu.Unlock()
	return nil
}

// invokerStates is the controller's view of its invokers, as GET /invokers shows it:
// "up" while pinging and enabled, "down" otherwise (InvokerState's strings). Standalone
// does not run the health test action: a pinging invoker is up.
func (s *Server) invokerStates() map[string]string {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	out := map[string]string{}
	ids := make([]int, 0, len(s.invokers))
	for n := range s.invokers {
		ids = append(ids, n)
	}
	sort.Ints(ids)
	for _, n := range ids {
		h := s.invokers[n]
		state := "down"
		if h.enabled && time.Since(h.lastPing) < pingTimeout {
			state = "up"
		}
		out[invokerName(h.id)] = state
	}
	return out
}

func (s *Server) getInvokers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.invokerStates())
}

func (s *Server) getHealthyCount(w http.ResponseWriter, r *http.Request) {
	n := 0
	for _, st := range s.invokerStates() {
		if st == "up" {
			n++
		}
	}
	writeJSON(w, http.StatusOK, n)
}
