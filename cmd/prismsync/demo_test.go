package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/internal/pgtemp"
)

// The README's first command must keep working on a machine with only Go
// and the PostgreSQL server package.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own PostgreSQL")
	}
	if _, err := pgtemp.FindBin(); err != nil {
		t.Skip(err) // pgtest.Main already failed the run under CI=true
	}
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"demo", "--rows", "600"}, envconfig.MapLookuper(nil), &out, &bytes.Buffer{}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"rows read 600 · skipped unchanged 0 · sent 600 · created 600",
		"rows read 110 · skipped unchanged 0 · sent 110 · created 10 · updated 100",
		"rows read 0 · skipped unchanged 0 · sent 0",
		"rows read 50 · skipped unchanged 50 · sent 0",
		"fake API now holds 610 organizations",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
