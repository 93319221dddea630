package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
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
