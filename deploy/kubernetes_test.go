package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// manifests reads every document of every YAML file in deploy/kubernetes.
func manifests(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	out := map[string]map[string]any{} // by kind/name
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for i := 0; ; i++ {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s, document %d: %v", f, i+1, err)
			}
			kind, _ := doc["kind"].(string)
			name, _ := dig(doc, "metadata", "name").(string)
			if kind == "Kustomization" {
				continue // kustomize's own file, not an object: no name
			}
			if kind == "" || name == "" || doc["apiVersion"] == nil {
				t.Errorf("%s, document %d: no apiVersion, kind or metadata.name", f, i+1)
				continue
			}
			out[kind+"/"+name] = doc
		}
	}
	return out
}

// dig follows keys (strings) and indexes (ints) into a decoded document;
// nil when a step is missing.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		case int:
			l, ok := v.([]any)
			if !ok || p >= len(l) {
				return nil
			}
			v = l[p]
		}
	}
	return v
}

func sameLabels(a, b any) bool {
	am, _ := a.(map[string]any)
	bm, _ := b.(map[string]any)
	if len(am) == 0 {
		return false
	}
	for k, v := range am {
		if bm[k] != v {
			return false
		}
	}
	return true
}

// The manifests parse, and the settings two replicas depend on are there:
// anti-affinity between the replicas, a disruption budget that lets
// unhealthy pods go, GOMEMLIMIT from the container's memory limit.
func TestKubernetesManifests(t *testing.T) {
	docs := manifests(t)
	dep := docs["Deployment/prismsync"]
	if dep == nil {
		t.Fatal("no Deployment prismsync")
	}
	podLabels := dig(dep, "spec", "template", "metadata", "labels")
	if r, _ := dig(dep, "spec", "replicas").(int); r != 2 {
		t.Errorf("replicas = %v, want 2", dig(dep, "spec", "replicas"))
	}
	term := dig(dep, "spec", "template", "spec", "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", 0, "podAffinityTerm")
	if dig(term, "topologyKey") != "kubernetes.io/hostname" || !sameLabels(dig(term, "labelSelector", "matchLabels"), podLabels) {
		t.Errorf("pod anti-affinity term %v does not keep the pods %v on different nodes", term, podLabels)
	}

	c := dig(dep, "spec", "template", "spec", "containers", 0)
	if dig(c, "resources", "limits", "memory") == nil {
		t.Error("the container has no memory limit for GOMEMLIMIT to follow")
	}
	var memlimit any
	env, _ := dig(c, "env").([]any)
	for _, e := range env {
		if dig(e, "name") == "GOMEMLIMIT" {
			memlimit = dig(e, "valueFrom", "resourceFieldRef")
		}
	}
	if dig(memlimit, "resource") != "limits.memory" || dig(memlimit, "containerName") != dig(c, "name") {
		t.Errorf("GOMEMLIMIT from %v, want the resourceFieldRef limits.memory of container %v", memlimit, dig(c, "name"))
	}
	if d, ok := dig(memlimit, "divisor").(string); ok && d != "1" {
		t.Errorf("GOMEMLIMIT divisor %q: the runtime reads a plain number as bytes", d)
	}

	pdb := docs["PodDisruptionBudget/prismsync"]
	if dig(pdb, "spec", "unhealthyPodEvictionPolicy") != "AlwaysAllow" || !sameLabels(dig(pdb, "spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("PodDisruptionBudget %v: want unhealthyPodEvictionPolicy AlwaysAllow over the pods %v", dig(pdb, "spec"), podLabels)
	}
	if dig(pdb, "spec", "minAvailable") != 1 {
		t.Errorf("PodDisruptionBudget minAvailable = %v, want 1 of the 2 replicas", dig(pdb, "spec", "minAvailable"))
	}

	b, err := os.ReadFile("kubernetes/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join("kubernetes", r)); err != nil {
			t.Errorf("kustomization names %s: %v", r, err)
		}
	}
}

// The image build stamps the version and commit into the variables cmd
// reads (so prismsync version and prismsync_build_info name the build) and
// into the OCI labels; .git stays out of the build context.
func TestDockerfile(t *testing.T) {
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	df := read("../Dockerfile")
	app := read("../cmd/prismsync/app.go")
	for _, v := range []string{"buildVersion", "buildCommit"} {
		if !regexp.MustCompile(`(?m)^\s*` + v + `\s*=\s*""`).MatchString(app) {
			t.Errorf("cmd/prismsync/app.go declares no variable %s for the linker to stamp", v)
		}
	}
	for _, want := range []string{"-X main.buildVersion=${VERSION}", "-X main.buildCommit=${COMMIT}",
		`org.opencontainers.image.version="${VERSION}"`, `org.opencontainers.image.revision="${COMMIT}"`,
		`org.opencontainers.image.created="${CREATED}"`, "org.opencontainers.image.source="} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
	// The labels are in the final stage, which must declare its own ARGs.
	final := df[strings.LastIndex(df, "\nFROM "):]
	for _, arg := range []string{"VERSION", "COMMIT", "CREATED"} {
		if !regexp.MustCompile(`(?m)^ARG ` + arg + `\b`).MatchString(final) {
			t.Errorf("the Dockerfile's final stage does not declare ARG %s for its labels", arg)
		}
	}
	ignore := strings.Fields(read("../.dockerignore"))
	for _, want := range []string{".git", "*.env"} {
		found := false
		for _, l := range ignore {
			found = found || l == want
		}
		if !found {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}
