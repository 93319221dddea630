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
		{"bench", "--table", "tall"},
	} {
		err := Run(context.Background(), args, envconfig.MapLookuper(nil), &bytes.Buffer{}, &bytes.Buffer{})
		if exitCode(err) != exitUsage {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}

// --table narrow is issue 12's job: its own defaults, unless a flag says
// otherwise.
func TestBenchNarrowDefaults(t *testing.T) {
	type defaults struct {
		table            string
		batch, threshold int
		rateLimit        float64
		index, fp        bool
	}
	for _, tc := range []struct {
		args []string
		want defaults
	}{
		{[]string{"--table", "narrow"}, defaults{bench.Narrow, 1000, 1001, -1, false, true}},
		{[]string{"--table", "narrow", "--index", "--batch", "500", "--fingerprints=false"}, defaults{bench.Narrow, 500, 1001, -1, true, false}},
		{nil, defaults{bench.Wide, 5000, 100, 0, true, false}},
	} {
		c, _, err := benchConfig(tc.args, &bytes.Buffer{}, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := (defaults{c.Table, c.Batch, c.Threshold, c.RateLimit, c.Index, c.Fingerprints}); got != tc.want {
			t.Errorf("%v: %+v, want %+v", tc.args, got, tc.want)
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
