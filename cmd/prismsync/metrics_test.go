package main

import (
	"bytes"
	"context"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/sethvargo/go-envconfig"
)

// series returns every series of the metric family name as label sets
// with their values (a histogram's value is its sample count).
func series(t *testing.T, a *app, name string) []labelled {
	t.Helper()
	fams, err := a.metrics.Registry().Gather()
	mustT(t, err)
	var out []labelled
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			l := labelled{labels: map[string]string{}}
			for _, lp := range m.GetLabel() {
				l.labels[lp.GetName()] = lp.GetValue()
			}
			l.value = metricValue(m)
			out = append(out, l)
		}
	}
	return out
}

type labelled struct {
	labels map[string]string
	value  float64
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// A pass through the real client counts every request under the sync that
// made it and its operation: imports and the polls of async jobs.
func TestRequestsLabelledBySyncAndOp(t *testing.T) {
	env, fake := onceEnv(t, "right-key") // 250 rows in batches of 100: async jobs (polled) and a sync import
	a, err := newApp(context.Background(), envconfig.MapLookuper(env), &bytes.Buffer{})
	mustT(t, err)
	defer a.close()
	sy := a.syncer(a.syncs[0])
	if _, _, err := a.runPass(context.Background(), sy); err != nil {
		t.Fatal(err)
	}
	byOp := map[string]float64{}
	for _, s := range series(t, a, "prismsync_api_requests_total") {
		if s.labels["sync"] != "items" {
			t.Errorf("request series %v: want sync=items", s.labels)
		}
		byOp[s.labels["op"]] += s.value
	}
	st := fake.Stats()
	if byOp["import"] != float64(st.Imports) || byOp["poll"] != float64(st.Polls) || st.Polls == 0 {
		t.Errorf("requests by op = %v; the fake saw %d imports and %d polls", byOp, st.Imports, st.Polls)
	}
}
