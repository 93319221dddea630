package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// CheckFunc reports whether something prismsync depends on is usable; nil
// means ready. Its error text is shown on /readyz, so it must not contain
// secrets.
type CheckFunc func(ctx context.Context) error

// readyTimeout bounds one /readyz request: a probe that hangs is worse than
// one that fails.
const readyTimeout = 5 * time.Second

// Handler serves /healthz, /readyz and /metrics. /readyz runs ready (may be
// nil) and then fails while a sync is failing past the threshold.
func (m *Metrics) Handler(ready CheckFunc) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		// Alive means "this process answers HTTP": a restart would not fix
		// an unreachable database, so that belongs to /readyz only.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		var errs []error
		if ready != nil {
			errs = append(errs, ready(ctx))
		}
		errs = append(errs, m.Ready(ctx))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := errors.Join(errs...); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready:\n%s\n", indent(err.Error()))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:          m.reg, // counts its own scrape errors
		EnableOpenMetrics: true,
	}))
	return mux
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// shutdownTimeout bounds how long ServeListener waits for open requests once
// its context ends; scrapes and probes are short.
const shutdownTimeout = 5 * time.Second

// ServeListener serves h on ln until ctx ends, then shuts down gracefully;
// it returns nil after a shutdown caused by ctx, and closes ln. The caller
// opens the listener, so it can report a busy address before starting
// anything else, or use port 0 in tests.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("telemetry: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		<-errc
		return fmt.Errorf("telemetry: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("telemetry: serve: %w", err)
	}
	return nil
}
