-- The database validate_test.go checks validate_*.yaml against.
CREATE TABLE people (
	id         int PRIMARY KEY,
	email      text,
	updated_at timestamptz NOT NULL
);
CREATE INDEX people_updated_at_id ON people (updated_at, id);
CREATE TABLE visits (person int, at timestamp, note text);
INSERT INTO visits VALUES (1, NULL, 'x'), (2, '2026-03-01 10:00', 'y');
