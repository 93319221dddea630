package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/sethvargo/go-envconfig"
)

const healthcheckHelp = `Usage: prismsync healthcheck [--addr HOST:PORT] [--timeout 3s]

Exits 0 when the running daemon's /healthz answers 200 within the timeout,
1 otherwise. Made for Docker's HEALTHCHECK in an image without a shell or
curl. The address defaults to HTTP_ADDR; a wildcard host (0.0.0.0, [::] or
empty) is probed on loopback.

Examples:
  prismsync healthcheck
  HEALTHCHECK CMD ["/usr/local/bin/prismsync", "healthcheck"]
`

func runHealthcheck(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := newFlagSet("healthcheck", healthcheckHelp, stdout, stderr)
	addrFlag := fs.String("addr", "", "address of the ops endpoint (default: HTTP_ADDR)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if help, err := fs.parse(args); help || err != nil {
		return err
	}
	// Only HTTP_ADDR matters here: the probe must not fail because, say, a
	// secret file is unreadable by the probing user.
	var cfg struct {
		HTTPAddr string `env:"HTTP_ADDR, default=127.0.0.1:9464"`
	}
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &cfg, Lookuper: env}); err != nil {
		return fmt.Errorf("environment: %w", err)
	}
	addr := cfg.HTTPAddr
	if *addrFlag != "" {
		addr = *addrFlag
	}
	// Failures below are plain errors (exit 1) on purpose: Docker reserves
	// exit code 2 of a health check and treats 1 as "unhealthy".
	if addr == "" {
		return errors.New("HTTP_ADDR is empty, so the daemon serves no /healthz; set HTTP_ADDR or drop the health check")
	}
	target, err := probeAddr(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+target+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	// No proxy: the daemon is local, and HTTP_PROXY in a container must not
	// send the probe elsewhere.
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)) //nolint:errcheck // the status decides
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s/healthz answered %s", target, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// probeAddr turns a listen address into one to connect to: a wildcard or
// empty host means "every interface", which loopback is one of.
func probeAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("HTTP_ADDR %q: %w", listen, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}
