package mapping_test

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/prismsync/prismsync/mapping"
)

func Example() {
	file, findings := mapping.Parse("prismsync.yaml", []byte(`
syncs:
  - name: people
    source: {table: public.people, key: [id], cursor: updated_at}
    target: {object: contact, dedupe_by: email, case_insensitive: true}
    properties:
      external_id: {column: id, type: string}
      email: {column: email, transform: [trim, lower], required: true}
      full_name: {template: "{first_name} {last_name}"}
      signed_up: created_at
      source_system: {value: postgres}
`))
	if findings.HasErrors() {
		fmt.Println(findings)
		return
	}
	sync, _ := file.Sync("people")
	// The column list comes from the query's field descriptions.
	enc, err := sync.Compile([]mapping.Column{
		{Name: "id", OID: pgtype.Int8OID},
		{Name: "email", OID: pgtype.TextOID},
		{Name: "first_name", OID: pgtype.TextOID},
		{Name: "last_name", OID: pgtype.TextOID},
		{Name: "created_at", OID: pgtype.TimestamptzOID},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	row := []any{int64(42), " Ada@Example.com", "Ada", nil, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)}
	body, dedupe, err := enc.Append(nil, row, nil)
	fmt.Println(string(body), dedupe, err)

	_, _, err = enc.Append(nil, []any{int64(43), nil, "Bob", "B", nil}, nil)
	fmt.Println(err)
	// Output:
	// {"default":{"external_id":"42","email":"ada@example.com","full_name":"Ada ","signed_up":"2024-05-06T07:08:09Z","source_system":"postgres"}} ada@example.com <nil>
	// property email: required value is NULL or empty (missing_required)
}

func ExampleParse_findings() {
	_, findings := mapping.Parse("bad.yaml", []byte(`syncs:
  - name: people
    schedule: "every minute"
    source: {table: people, key: id, cursor: updated_at}
    batch_size: 0
    properties:
      Email: email
`))
	fmt.Println(findings)
	// Output:
	// bad.yaml:3:15: schedule: invalid cron spec "every minute": expected exactly 5 fields, found 2: [every minute]
	// bad.yaml:5:17: batch_size: 0 is out of range 1..10000
	// bad.yaml:7:7: properties: malformed slug "Email" (want lower case letters, digits and _, starting with a letter, at most 64 chars)
}
