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

// run is Run as main sees it: what it printed, and the error main prints.
func runArgs(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = Run(context.Background(), args, envconfig.MapLookuper(env), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		out, errOut, err := runArgs(t, nil, args...)
		if err != nil || !strings.HasPrefix(out, "prismsync ") || !strings.Contains(out, "commit") || errOut != "" {
			t.Errorf("%v: %q %q %v", args, out, errOut, err)
		}
	}
	if _, _, err := runArgs(t, nil, "version", "extra"); exitCode(err) != exitUsage {
		t.Errorf("version extra: %v", err)
	}
}

// Help is asked for, so it goes to stdout and succeeds, with every flag
// and its default; the same text for "help CMD" and "CMD --help".
func TestHelpGoesToStdout(t *testing.T) {
	for _, cmd := range commands {
		out, errOut, err := runArgs(t, nil, cmd, "--help")
		if err != nil || errOut != "" || !strings.Contains(out, "Usage: prismsync "+cmd) {
			t.Errorf("%s --help: err %v, stderr %q, stdout %.80q", cmd, err, errOut, out)
			continue
		}
		again, errOut, err := runArgs(t, nil, "help", cmd)
		if err != nil || errOut != "" || again != out {
			t.Errorf("help %s differs from %s --help (err %v, stderr %q)", cmd, cmd, err, errOut)
		}
	}
	out, _, _ := runArgs(t, nil, "rejects", "--help")
	for _, want := range []string{"Flags:\n", "-limit int", "(default 100)", "-sync string"} {
		if !strings.Contains(out, want) {
			t.Errorf("rejects --help lacks %q:\n%s", want, out)
		}
	}
	if i, j := strings.Index(out, "Flags:"), strings.Index(out, "Examples:"); i < 0 || j < i {
		t.Errorf("the flags do not come before the examples:\n%s", out)
	}
	if out, _, err := runArgs(t, nil, "help"); err != nil || !strings.Contains(out, "Usage:") {
		t.Errorf("help: %v %q", err, out)
	}
	if _, _, err := runArgs(t, nil, "help", "frobnicate"); exitCode(err) != exitUsage || !strings.Contains(err.Error(), "frobnicate") {
		t.Errorf("help frobnicate: %v", err)
	}
}

// validate other.yaml used to validate ./mapping.yaml without a word.
func TestStrayArgumentIsAnError(t *testing.T) {
	_, _, err := runArgs(t, nil, "validate", "other.yaml")
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), `"other.yaml"`) || !strings.Contains(err.Error(), "MAPPING_FILE=other.yaml") {
		t.Errorf("validate other.yaml: %v (exit %d)", err, exitCode(err))
	}
	_, _, err = runArgs(t, nil, "status", "--json", "people")
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), `"people"`) {
		t.Errorf("status --json people: %v", err)
	}
}

// A bad flag: the help once on stderr, the error once (main prints it).
func TestBadFlagPrintsHelpAndErrorOnce(t *testing.T) {
	out, errOut, err := runArgs(t, nil, "status", "--bogus")
	if exitCode(err) != exitUsage || out != "" {
		t.Fatalf("status --bogus: exit %d, stdout %q", exitCode(err), out)
	}
	printed := errOut + "prismsync: " + err.Error() + "\n"
	if n := strings.Count(printed, "Usage: prismsync status"); n != 1 {
		t.Errorf("help printed %d times:\n%s", n, printed)
	}
	if n := strings.Count(printed, "-bogus"); n != 1 {
		t.Errorf("the error printed %d times:\n%s", n, printed)
	}
}
