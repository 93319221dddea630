package main

import (
	"bytes"
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func mustT(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestConfigListsEveryMissingVariable(t *testing.T) {
	err := Run(context.Background(), []string{"once"}, envconfig.MapLookuper(map[string]string{}), &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("once without configuration succeeded")
	}
	for _, v := range []string{"DATABASE_URL", "MICRO_API_KEY", "MICRO_TEAM_ID"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error %q does not name %s", err, v)
		}
	}
	if code := exitCode(err); code != exitUsage {
		t.Errorf("exit code %d, want %d", code, exitUsage)
	}
}

func TestUnknownCommand(t *testing.T) {
	err := Run(context.Background(), []string{"frobnicate"}, envconfig.MapLookuper(nil), &bytes.Buffer{}, &bytes.Buffer{})
	if exitCode(err) != exitUsage {
		t.Fatalf("unknown command: err %v, exit %d", err, exitCode(err))
	}
}

func TestBadConfigurationExitsTwo(t *testing.T) {
	ctx := context.Background()
	env, _ := onceEnv(t, "right-key")
	for name, change := range map[string]func(map[string]string){
		"missing mapping file": func(e map[string]string) { e["MAPPING_FILE"] = "/nonexistent/mapping.yaml" },
		"bad schedule":         func(e map[string]string) { e["SYNC_SCHEDULE"] = "every tuesday" },
	} {
		e := maps.Clone(env)
		change(e)
		err := Run(ctx, []string{"once"}, envconfig.MapLookuper(e), &bytes.Buffer{}, &bytes.Buffer{})
		if code := exitCode(err); code != exitUsage {
			t.Errorf("%s: exit %d (%v), want %d", name, code, err, exitUsage)
		}
	}
}
