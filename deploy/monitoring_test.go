package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/prismsync/prismsync/internal/telemetry"
)

const (
	rulesFile     = "monitoring/prismsync.rules.yml"
	dashboardFile = "monitoring/prismsync-dashboard.json"
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// decode reads path into a T with unmarshal (yaml.Unmarshal,
// json.Unmarshal), failing the test on any error.
func decode[T any](t *testing.T, path string, unmarshal func([]byte, any) error) T {
	t.Helper()
	var v T
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// families is every metric family a running daemon exports once its syncs
// are added and the store was read, with each family's type.
func families(t *testing.T) map[string]dto.MetricType {
	t.Helper()
	m := telemetry.New(telemetry.Options{Version: "test"})
	m.AddSyncs("people")
	m.SetSyncStates([]telemetry.SyncState{{Sync: "people", Cursor: "2026-01-01"}})
	m.SetBudget(telemetry.Budget{Limit: 1000})
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dto.MetricType{}
	for _, f := range fams {
		out[f.GetName()] = f.GetType()
	}
	return out
}

var metricName = regexp.MustCompile(`\b(?:prismsync|go|process)_[a-z_]+\b`)

// checkNames fails for every metric expr names that the daemon does not
// export (a histogram's _bucket, _sum and _count count as the histogram).
func checkNames(t *testing.T, where, expr string, fams map[string]dto.MetricType) {
	t.Helper()
	for _, name := range metricName.FindAllString(expr, -1) {
		if _, ok := fams[name]; ok {
			continue
		}
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if typ, ok := fams[base]; ok && typ == dto.MetricType_HISTOGRAM && base != name {
			continue
		}
		t.Errorf("%s: %s is not a metric prismsync exports", where, name)
	}
}

// Every alert names only metrics that exist, waits (for:) before firing,
// aggregates per sync across replicas, and carries what the person paged
// needs: a summary, a description and a runbook line.
func TestAlertRules(t *testing.T) {
	rf := decode[ruleFile](t, rulesFile, yaml.Unmarshal)
	fams := families(t)
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			where := rulesFile + ": " + r.Alert
			if r.Alert == "" {
				t.Errorf("%s: group %s has a rule that is not an alert", rulesFile, g.Name)
				continue
			}
			alerts = append(alerts, r.Alert)
			checkNames(t, where, r.Expr, fams)
			if r.For == "" {
				t.Errorf("%s: no for:", where)
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", where, s)
			}
			// A per-sync series is exported by every replica: an alert
			// must not fire once per replica.
			if strings.Contains(r.Annotations["summary"], "$labels.sync") && !strings.Contains(r.Expr, "by (sync)") {
				t.Errorf("%s: names a sync but does not aggregate by (sync)", where)
			}
			if strings.Contains(r.Expr, "prismsync_") && !strings.Contains(r.Expr, "max") && !strings.Contains(r.Expr, "sum") && !strings.Contains(r.Expr, "absent(") {
				t.Errorf("%s: not aggregated across replicas", where)
			}
		}
	}
	for _, want := range []string{"PrismsyncSyncFailing", "PrismsyncCheckpointStale", "PrismsyncRejectsGrowing",
		"PrismsyncDeferredRowsGrowing", "PrismsyncBudgetPaceSlow", "PrismsyncBudgetNearlySpent", "PrismsyncNoLeader"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("%s has no alert %s", rulesFile, want)
		}
	}
}

// The dashboard is valid JSON, every panel but a row queries something,
// and every query names only metrics that exist.
func TestDashboard(t *testing.T) {
	d := decode[dashboard](t, dashboardFile, json.Unmarshal)
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: title %q, uid %q, %d panels", dashboardFile, d.Title, d.UID, len(d.Panels))
	}
	fams := families(t)
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, "prismsync_") {
				t.Errorf("%s: panel %q: query %q names no prismsync metric", dashboardFile, p.Title, tg.Expr)
			}
			checkNames(t, fmt.Sprintf("%s: panel %q", dashboardFile, p.Title), tg.Expr, fams)
		}
	}
}

// The dashboard's queries are PromQL that Prometheus parses: promtool
// checks them as the expressions of a generated rule file, with Grafana's
// variables replaced by values of their kind. .ci/run installs promtool.
func TestDashboardQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed (Debian's prometheus package ships it)")
		}
		t.Skip("promtool is not installed")
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__range", "1d", "$sync", "people")
	var rules []map[string]string
	for _, p := range decode[dashboard](t, dashboardFile, json.Unmarshal).Panels {
		for i, tg := range p.Targets {
			rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:panel_%d:%d", len(rules), i), "expr": vars.Replace(tg.Expr)})
		}
	}
	doc, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}
