-- jitca's store on PostgreSQL, version 1: what SledStore keeps in its trees, as tables.
-- Migrations only ever add: a later version never drops or rewrites what an earlier one made.

-- Requests: the record as JSON (the same bytes SledStore keeps), the compare-and-swap token
-- (a version no other write ever takes), and what the lifecycle looks records up by.
CREATE TABLE jitca_requests (
    id          text COLLATE "C" PRIMARY KEY,
    version     bigint NOT NULL,
    created_ns  bigint NOT NULL,
    -- When the sweeper must look at it (a pending request lapses, an ended grant's review
    -- falls due): nanoseconds since 1970, NULL when nothing is due.
    deadline_ns bigint,
    -- The database's clock at the last write: a daemon whose listening connection dropped
    -- announces what changed while it was away.
    changed_at  timestamptz NOT NULL DEFAULT now(),
    body        bytea NOT NULL
);
CREATE INDEX jitca_requests_newest ON jitca_requests (created_ns DESC, id DESC);
CREATE INDEX jitca_requests_deadline ON jitca_requests (deadline_ns) WHERE deadline_ns IS NOT NULL;
CREATE INDEX jitca_requests_changed ON jitca_requests (changed_at);

-- Compare-and-swap tokens of requests and second factors: never handed out twice.
CREATE SEQUENCE jitca_versions AS bigint MINVALUE 1 NO CYCLE;

-- Certificate serials: never 0, never twice, across every daemon and every crash (a sequence
-- does not roll back).
CREATE SEQUENCE jitca_serials AS bigint MINVALUE 1 NO CYCLE;

-- The audit chain: each record's line exactly as sealed (docs/audit.md), by its seq.
CREATE TABLE jitca_audit (
    seq  bigint PRIMARY KEY,
    line bytea NOT NULL
);

-- The chain's end (JSON of the head; NULL: the genesis). Its one row is locked by every
-- append, so the daemons append one at a time, in one order they all see.
CREATE TABLE jitca_audit_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    head     text
);
INSERT INTO jitca_audit_head (head) VALUES (NULL);

-- The revocation list's version and the time its contents were fixed (JSON; NULL: none yet).
CREATE TABLE jitca_krl (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    state    text
);
INSERT INTO jitca_krl (state) VALUES (NULL);

-- Named counters of one daemon (the last audit record it wrote to its own audit_log file),
-- under "node/name".
CREATE TABLE jitca_marks (
    name  text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);

-- Second factors: the sealed record as JSON, with its compare-and-swap token.
CREATE TABLE jitca_second_factors (
    username text COLLATE "C" PRIMARY KEY,
    version  bigint NOT NULL,
    body     bytea NOT NULL
);
