-- The database the live_*.yaml fixtures are checked against (live_test.go).
CREATE TABLE people (
	id         int PRIMARY KEY,
	email      text,
	first_name text,
	updated_at timestamptz NOT NULL,
	photo      bytea
);
CREATE INDEX people_updated_at_id ON people (updated_at, id);
CREATE VIEW people_v AS SELECT * FROM people;

-- No unique key, no index, a nullable timestamp cursor holding a NULL.
CREATE TABLE loose (ref int, name text, seen timestamp);
INSERT INTO loose VALUES (1, 'a', NULL), (2, 'b', '2026-01-01');

-- A nullable cursor without NULLs, a text column, a composite key with a
-- unique constraint, and an index on the cursor alone.
CREATE TABLE notes (
	id   bigint NOT NULL,
	lang text NOT NULL,
	body text,
	rev  int,
	tag  text,
	UNIQUE (lang, id)
);
CREATE INDEX notes_rev ON notes (rev);
INSERT INTO notes VALUES (1, 'en', 'x', 1, 't');

-- Good shapes: a primary key inside a wider sync key, and an index whose
-- leading columns are (cursor, key...) followed by more.
CREATE TABLE events (id int PRIMARY KEY, at date NOT NULL, kind text NOT NULL, note text);
CREATE INDEX events_at_id_kind_note ON events (at, id, kind, note);
-- A unique index with a predicate does not make a key unique.
CREATE TABLE tickets (no int NOT NULL, at bigint NOT NULL, open boolean);
CREATE UNIQUE INDEX tickets_open_no ON tickets (no) WHERE open;
CREATE INDEX tickets_at_no ON tickets (at, no);
