package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/connector"
	"github.com/prismsync/prismsync/mapping"
)

const validateHelp = `Usage: prismsync validate

Checks MAPPING_FILE and prints every finding as FILE:LINE:COL: message.
With DATABASE_URL set it also describes each sync's source (without reading
rows) and checks that every referenced column exists and fits its mapping.
Sends nothing to the API. Exits 2 if any finding is an error.

Example:
  MAPPING_FILE=mapping.yaml prismsync validate
`

func runValidate(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, validateHelp) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &usageError{err}
	}
	cfg, err := loadConfig(ctx, env, needs{})
	if err != nil {
		return err
	}
	data, err := os.ReadFile(cfg.MappingFile)
	if err != nil {
		return &usageError{fmt.Errorf("mapping file: %w", err)}
	}
	mf, findings := mapping.Parse(cfg.MappingFile, data)
	for _, f := range findings {
		fmt.Fprintln(stdout, f.String())
	}
	if findings.HasErrors() {
		return &usageError{fmt.Errorf("%s: %d errors", cfg.MappingFile, len(findings.Errors()))}
	}
	problems := 0
	if cfg.DatabaseURL != "" {
		pool, err := openPool(ctx, cfg.DatabaseURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		for _, s := range mf.Syncs {
			src, err := connector.NewSource(ctx, pool, s)
			if err == nil {
				_, err = s.Compile(src.Fields())
			}
			if err != nil {
				problems++
				fmt.Fprintf(stdout, "%s: sync %s: %v\n", cfg.MappingFile, s.Name, err)
			}
		}
	}
	if problems > 0 {
		return &usageError{fmt.Errorf("%s: %d syncs do not fit their source", cfg.MappingFile, problems)}
	}
	fmt.Fprintf(stdout, "%s: %d syncs OK\n", cfg.MappingFile, len(mf.Syncs))
	return nil
}
