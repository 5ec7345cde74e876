package kafka

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/seuss-go/seuss/activation"
)

type handlerFunc func(context.Context, []byte) error

func (f handlerFunc) Handle(ctx context.Context, b []byte) error { return f(ctx, b) }

func TestControlHandler(t *testing.T) {
	p := NewProducer([]string{"127.0.0.1:1"}, nil)
	defer p.Close()
	s, err := NewService(ServiceConfig{Brokers: []string{"127.0.0.1:1"}, Handler: handlerFunc(nil), Producer: p,
		Instance: activation.NewInvokerInstanceID(0, 2048)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.ControlHandler("admin", "secret"))
	defer srv.Close()
	do := func(method, path string, auth bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if auth {
			req.SetBasicAuth("admin", "secret")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := do("GET", "/ping", false); code != 200 || body != "pong" {
		t.Fatalf("/ping: %d %q", code, body)
	}
	if code, _ := do("POST", "/disable", false); code != 401 {
		t.Fatalf("/disable without auth: %d", code)
	}
	if code, _ := do("POST", "/disable", true); code != 200 || s.Enabled() {
		t.Fatalf("/disable: %d, enabled %v", code, s.Enabled())
	}
	if code, body := do("GET", "/isEnabled", true); code != 200 || body != `{"enabled":false}` {
		t.Fatalf("/isEnabled: %d %q", code, body)
	}
	if code, _ := do("POST", "/enable", true); code != 200 || !s.Enabled() {
		t.Fatalf("/enable: %d", code)
	}
	if code, _ := do("GET", "/enable", true); code != 405 {
		t.Fatalf("GET /enable: %d, want 405", code)
	}
}
