package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer bad.Close()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	mustT(t, err)
	closedAddr := closed.Addr().String()
	closed.Close()

	hostPort := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	_, okPort, _ := net.SplitHostPort(hostPort(ok))
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		ok   bool
	}{
		{"healthy", map[string]string{"HTTP_ADDR": hostPort(ok)}, nil, true},
		{"wildcard host probes loopback", map[string]string{"HTTP_ADDR": "0.0.0.0:" + okPort}, nil, true},
		{"empty host probes loopback", map[string]string{"HTTP_ADDR": ":" + okPort}, nil, true},
		{"flag overrides env", map[string]string{"HTTP_ADDR": closedAddr}, []string{"--addr", hostPort(ok)}, true},
		{"500", map[string]string{"HTTP_ADDR": hostPort(bad)}, nil, false},
		{"nothing listening", map[string]string{"HTTP_ADDR": closedAddr}, nil, false},
		{"hangs past timeout", map[string]string{"HTTP_ADDR": hostPort(hang)}, []string{"--timeout", "200ms"}, false},
		{"disabled", map[string]string{"HTTP_ADDR": ""}, nil, false},
		{"bad address", map[string]string{"HTTP_ADDR": "nonsense"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			start := time.Now()
			err := Run(context.Background(), append([]string{"healthcheck"}, tc.args...), envconfig.MapLookuper(tc.env), &stdout, &stderr)
			if tc.ok {
				if err != nil || stdout.String() != "ok\n" {
					t.Errorf("err %v, stdout %q", err, stdout.String())
				}
				return
			}
			// Docker reads 1 as unhealthy and reserves 2.
			if err == nil || exitCode(err) != exitFailure {
				t.Errorf("err %v, exit %d; want exit %d", err, exitCode(err), exitFailure)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
	// The default address is HTTP_ADDR's default.
	if got, _ := probeAddr("[::]:9464"); got != "[::1]:9464" {
		t.Errorf("probeAddr([::]:9464) = %s", got)
	}
}
