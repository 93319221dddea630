package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/internal/bench"
)

// The measurement itself is tested in internal/bench; here, that the
// commands refuse bad flags with exit code 2.
func TestBenchFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--rows", "0"},
		{"bench", "--batch", "20000"},
		{"bench", "--inflight", "0"},
		{"bench", "--latency", "-1s"},
		{"bench", "extra"},
	} {
		err := Run(context.Background(), args, envconfig.MapLookuper(nil), &bytes.Buffer{}, &bytes.Buffer{})
		if exitCode(err) != exitUsage {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}

func TestBenchFakeAPIRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:80", "example.com:80"} {
		err := Run(context.Background(), []string{bench.FakeAPICommand, "--addr", addr}, envconfig.MapLookuper(nil), &bytes.Buffer{}, &bytes.Buffer{})
		if exitCode(err) != exitUsage {
			t.Errorf("--addr %s: err %v, want a usage error", addr, err)
		}
	}
}
