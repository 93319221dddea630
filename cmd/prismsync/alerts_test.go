package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prismsync/prismsync/internal/alert"
)

// hookReceiver is a loopback webhook that keeps what it received.
type hookReceiver struct {
	mu     sync.Mutex
	events []alert.Event
	raw    []string
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var ev alert.Event
	if err := json.Unmarshal(b, &ev); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.events = append(h.events, ev)
	h.raw = append(h.raw, string(b))
	h.mu.Unlock()
}

func (h *hookReceiver) got() []alert.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]alert.Event(nil), h.events...)
}

// once alerts when a sync starts failing, stays quiet while it keeps
// failing (the state is read back from the store by the next process),
// and says when it recovers; the payload never holds the API key.
func TestOnceAlertsOnStateChanges(t *testing.T) {
	hooks := &hookReceiver{}
	srv := httptest.NewServer(hooks)
	defer srv.Close()
	env, _ := onceEnv(t, "wrong-key-0123")
	env["ALERT_WEBHOOK_URL"] = srv.URL + "/hook?token=t0ken"
	for range 2 {
		if _, _, err := runArgs(t, env, "once"); err == nil {
			t.Fatal("once with a wrong key succeeded")
		}
	}
	evs := hooks.got()
	if len(evs) != 1 {
		t.Fatalf("two failing runs sent %d alerts, want 1: %+v", len(evs), evs)
	}
	if ev := evs[0]; ev.Sync != "items" || ev.State != alert.Failing || ev.Previous != alert.Healthy ||
		!strings.Contains(ev.Message, "check MICRO_API_KEY") || ev.At.IsZero() || ev.FailedPasses != 1 {
		t.Errorf("failing alert: %+v", ev)
	}
	env["MICRO_API_KEY"] = "right-key"
	if _, _, err := runArgs(t, env, "once"); err != nil {
		t.Fatal(err)
	}
	evs = hooks.got()
	if len(evs) != 2 || evs[1].State != alert.Healthy || evs[1].Previous != alert.Failing {
		t.Fatalf("after the recovery: %+v", evs)
	}
	hooks.mu.Lock()
	defer hooks.mu.Unlock()
	for _, raw := range hooks.raw {
		if strings.Contains(raw, "wrong-key-0123") || strings.Contains(raw, "t0ken") {
			t.Errorf("payload carries a secret: %s", raw)
		}
	}
}

func TestRedactor(t *testing.T) {
	cfg := &Config{APIKey: "k3y-value", DatabaseURL: "postgres://app:pa55word@db:5432/app", AlertWebhookURL: "https://hooks.example/services/T0/B1/XyZ"}
	r := cfg.redactor()
	in := "connect postgres://app:pa55word@db:5432/app failed; auth pa55word; key k3y-value; POST https://hooks.example/services/T0/B1/XyZ"
	out := r(in)
	for _, secret := range []string{"pa55word", "k3y-value", "services/T0/B1/XyZ"} {
		if strings.Contains(out, secret) {
			t.Errorf("redacted text holds %q: %s", secret, out)
		}
	}
	if r("nothing secret") != "nothing secret" {
		t.Error("redactor changed plain text")
	}
	if err := checkWebhook("ftp://x/y?token=s3cret"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("checkWebhook = %v", err)
	}
}
