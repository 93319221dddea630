package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/sethvargo/go-envconfig"

	"github.com/prismsync/prismsync/mapping"
)

const validateHelp = `Usage: prismsync validate

Checks MAPPING_FILE and prints every finding as FILE:LINE:COL: message.
With DATABASE_URL set it also checks each sync against its source, inside a
READ ONLY transaction: every referenced column exists (a query source is
described, not run) and fits its transforms; the key is covered by a unique
index or constraint; the cursor has a supported type, is NOT NULL (an error
if it holds NULLs) and is indexed together with the key (the warning gives
the CREATE INDEX to run); a timestamp without time zone cursor is warned
about. The only rows read are a count of NULL cursors when the cursor may be
NULL. Sends nothing to the API and needs no MICRO_* variables. Warnings are
prefixed "warning:". Exits 2 if any finding is an error.

Examples:
  MAPPING_FILE=mapping.yaml prismsync validate
  DATABASE_URL=postgres://prismsync@db/app MAPPING_FILE=mapping.yaml prismsync validate
`

func runValidate(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", validateHelp, stdout, stderr)
	if help, err := fs.parse(args); help || err != nil {
		return err
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
	if cfg.DatabaseURL == "" {
		fmt.Fprintf(stdout, "%s: %d syncs OK (file checks only; set DATABASE_URL to check the sources too)\n", cfg.MappingFile, len(mf.Syncs))
		return nil
	}
	pool, err := openPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	var live mapping.Findings
	for _, s := range mf.Syncs {
		fs := mapping.CheckSource(ctx, pool, s)
		for _, f := range fs {
			fmt.Fprintln(stdout, f.String())
		}
		live = append(live, fs...)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if n := len(live.Errors()); n > 0 {
		return &usageError{fmt.Errorf("%s: %d errors against the source", cfg.MappingFile, n)}
	}
	fmt.Fprintf(stdout, "%s: %d syncs OK against the source (%d warnings)\n", cfg.MappingFile, len(mf.Syncs), len(findings.Warnings())+len(live.Warnings()))
	return nil
}
