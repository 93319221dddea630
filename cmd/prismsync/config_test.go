package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/connector/budget"
	"github.com/prismsync/prismsync/connector/prism"
)

// Every variable prismsync reads must be documented, with its default, in
// config.example.env (and the README's table).
func TestEveryVariableIsDocumented(t *testing.T) {
	example, err := os.ReadFile("../../config.example.env")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		tag := typ.Field(i).Tag.Get("env")
		name, opts, _ := strings.Cut(tag, ",")
		if !strings.Contains(string(example), name+"=") {
			t.Errorf("config.example.env does not list %s", name)
		}
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("README.md does not mention `%s`", name)
		}
		if _, def, ok := strings.Cut(opts, "default="); ok && !strings.Contains(string(example), name+"="+def) {
			t.Errorf("config.example.env does not show %s's default %q", name, def)
		}
	}
}

// The engine's errors speak of its own settings; what the operator reads
// names the variable to change, and keeps the error's kind (exit code).
func TestExplainNamesTheVariable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{fmt.Errorf("sync people: %w", &budget.ExhaustedError{Month: "2026-12", Used: 1000, Limit: 1000}), []string{"MICRO_MONTHLY_REQUESTS", "1000 of 1000"}},
		{fmt.Errorf("sync people: %w", &connector.PermanentError{Err: &connector.RejectShareError{Rejected: 30, Rows: 40, MaxShare: 0.5}}),
			[]string{"30 of 40 rows", "MAX_REJECT_SHARE=0.5", "prismsync rejects"}},
	} {
		got := explain(tc.err)
		for _, w := range tc.want {
			if !strings.Contains(got.Error(), w) {
				t.Errorf("explain(%q) = %q, want it to mention %s", tc.err, got, w)
			}
		}
		if !errors.Is(got, tc.err) || exitCode(got) != exitCode(tc.err) {
			t.Errorf("explain(%q) lost the error's kind: %v, exit %d", tc.err, got, exitCode(got))
		}
	}
	other := errors.New("boom")
	if explain(other) != other || explain(nil) != nil {
		t.Error("explain changed an error that names no setting")
	}
}

// prism names API answers in its own terms; cmd adds the variables to check,
// in returned errors and in the daemon's "pass failed" line.
func TestConfigHint(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string // "" = no hint
	}{
		{&prism.APIError{Op: "import", Status: 401}, "check MICRO_API_KEY / MICRO_TEAM_ID"},
		{fmt.Errorf("sync people: %w", &prism.APIError{Op: "poll", Status: 403}), "check MICRO_API_KEY / MICRO_TEAM_ID"},
		{&prism.APIError{Op: "import", Status: 404}, "check MICRO_BASE_URL, MICRO_TEAM_ID"},
		{&prism.APIError{Op: "poll", Status: 404}, ""},
		{&prism.APIError{Op: "import", Status: 400}, ""},
		{errors.New("boom"), ""},
	} {
		got := explain(tc.err)
		if again := explain(got); again.Error() != got.Error() {
			t.Errorf("explain twice: %v", again)
		}
		if tc.want == "" {
			if got != tc.err {
				t.Errorf("explain(%v) = %v, want it unchanged", tc.err, got)
			}
			continue
		}
		var ae *prism.APIError
		if !strings.Contains(got.Error(), tc.want) || !errors.As(got, &ae) {
			t.Errorf("explain(%v) = %v, want %q and the APIError kept", tc.err, got, tc.want)
		}
	}
	if explain(nil) != nil {
		t.Error("explain(nil) != nil")
	}

	var logs bytes.Buffer
	logSummary(slog.New(slog.NewJSONHandler(&logs, nil)), connector.Summary{Sync: "people"}, &prism.APIError{Op: "import", Status: 403})
	if !strings.Contains(logs.String(), `"msg":"pass failed"`) || !strings.Contains(logs.String(), "check MICRO_API_KEY / MICRO_TEAM_ID") {
		t.Errorf("pass failed line without the hint: %s", logs.String())
	}
}

// Every variable that does not parse is named, by its environment name, in
// one message with the other problems.
func TestConfigNamesEveryBadVariable(t *testing.T) {
	env := map[string]string{"SHUTDOWN_TIMEOUT": "30", "FINGERPRINTS": "yes", "MAX_INFLIGHT": "four", "LOG_FORMAT": "xml"}
	_, err := loadConfig(context.Background(), envconfig.MapLookuper(env), needs{db: true})
	if exitCode(err) != exitUsage {
		t.Fatalf("loadConfig: %v", err)
	}
	for _, want := range []string{`SHUTDOWN_TIMEOUT="30"`, "a duration with a unit", `FINGERPRINTS="yes"`, "true or false",
		`MAX_INFLIGHT="four"`, "a whole number", `LOG_FORMAT "xml"`, "missing DATABASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "ShutdownTimeout") || strings.Count(err.Error(), "configuration:") != 1 {
		t.Errorf("error names Go fields or is more than one message: %v", err)
	}
}

func TestJSONLogDurationsInSeconds(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf, "info", "json").Info("pass done", "duration", 1500*time.Millisecond)
	if !strings.Contains(buf.String(), `"duration":1.5`) {
		t.Errorf("log line: %s", buf.String())
	}
}

// /dev/null is a character device but no terminal: backfill must not ask
// it a question, nor colour logs for it.
func TestDevNullIsNoTerminal(t *testing.T) {
	f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("/dev/null taken for a terminal")
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer taken for a terminal")
	}
}
