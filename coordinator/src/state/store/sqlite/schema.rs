//! The tables. Each migration brings the file from `user_version` N-1 to N.

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 3;

/// Migrations, in order: `MIGRATIONS[i]` upgrades version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 0 → 1: the first schema.
    r#"
CREATE TABLE experiments (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,   -- submit order
    id           TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    description  TEXT,
    file_name    TEXT NOT NULL,
    grid_toml    TEXT NOT NULL,
    submitted_ms INTEGER NOT NULL
);
CREATE INDEX experiments_by_name ON experiments (name, seq);

CREATE TABLE runs (
    id                 TEXT PRIMARY KEY,
    experiment_id      TEXT NOT NULL REFERENCES experiments (id),
    idx                INTEGER NOT NULL,              -- order within the experiment
    name               TEXT NOT NULL,
    model              TEXT NOT NULL,
    spec_json          TEXT NOT NULL,                 -- serde_json of RunSpec
    factors_json       TEXT NOT NULL,                 -- the grid values that vary
    gpus               INTEGER NOT NULL,              -- 0: a CPU run
    epochs             INTEGER NOT NULL,
    params             INTEGER NOT NULL,
    flops              INTEGER NOT NULL,              -- forward FLOPs per image
    max_attempts       INTEGER NOT NULL,
    state              TEXT NOT NULL,                 -- queued running finished failed cancelled
    attempt            INTEGER NOT NULL DEFAULT 0,    -- attempts started; the fencing token
    failures           INTEGER NOT NULL DEFAULT 0,    -- failed or expired attempts
    worker_id          TEXT,                          -- lease holder
    devices_json       TEXT,                          -- leased devices
    lease_deadline_ms  INTEGER,
    error              TEXT,
    attempt_started_ms INTEGER,
    started_ms         INTEGER,
    finished_ms        INTEGER,
    wall_s             REAL NOT NULL DEFAULT 0,       -- all attempts
    current_epoch      INTEGER NOT NULL DEFAULT 0,
    current_step       INTEGER NOT NULL DEFAULT 0,
    steps_per_epoch    INTEGER NOT NULL DEFAULT 0,
    last_loss          REAL,
    checkpoint_epoch   INTEGER,                       -- latest stored checkpoint
    checkpoint_file    TEXT,                          -- its file under checkpoints/<run>/
    UNIQUE (experiment_id, idx),
    UNIQUE (experiment_id, name)
);
CREATE INDEX runs_by_state ON runs (state);

CREATE TABLE epochs (
    run_id         TEXT NOT NULL REFERENCES runs (id),
    epoch          INTEGER NOT NULL,                  -- 1-based
    attempt        INTEGER NOT NULL,                  -- the attempt that reported it
    train_loss     REAL,
    train_acc      REAL,
    eval_loss      REAL,
    eval_acc       REAL,
    lr             REAL,
    seconds        REAL,
    images_per_sec REAL,
    recorded_ms    INTEGER NOT NULL,
    PRIMARY KEY (run_id, epoch)
);

CREATE TABLE steps (
    run_id  TEXT NOT NULL REFERENCES runs (id),
    step    INTEGER NOT NULL,
    epoch   INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    loss    REAL,
    PRIMARY KEY (run_id, step)
);

CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms         INTEGER NOT NULL,
    experiment_id TEXT,
    run_id        TEXT,
    attempt       INTEGER,
    kind          TEXT NOT NULL,
    message       TEXT NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, id);

CREATE TABLE workers (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    devices_json  TEXT NOT NULL,
    threads       INTEGER NOT NULL,
    registered_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
);
"#,
    // 1 → 2: early stopping: each stop decision with its numbers, and the CPU threads a
    // run trained with (its compute in core-hours).
    r#"
ALTER TABLE runs ADD COLUMN cores INTEGER;                -- threads of the worker that last ran it

CREATE TABLE early_stops (
    run_id        TEXT PRIMARY KEY REFERENCES runs (id),
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    rule          TEXT NOT NULL,                     -- median | asha
    metric        TEXT NOT NULL,                     -- eval_acc, eval_loss, ...
    epoch         INTEGER NOT NULL,                  -- the epoch the verdict was taken at
    value         REAL,                              -- the run's variant there
    threshold     REAL,                              -- the median / the rung's cut-off
    compared_json TEXT NOT NULL,                     -- the other variants' values
    pending       INTEGER NOT NULL,                  -- variants not yet at the epoch
    reason        TEXT NOT NULL,
    stored_epochs INTEGER NOT NULL,                  -- epochs stored when it stopped
    decided_ms    INTEGER NOT NULL,
    resumed_ms    INTEGER                            -- set by `ablate resume`
);
CREATE INDEX early_stops_by_experiment ON early_stops (experiment_id);
"#,
    // 2 → 3: who submitted each experiment (the fair share is per user first).
    r#"
ALTER TABLE experiments ADD COLUMN submitted_by TEXT NOT NULL DEFAULT '';
"#,
];
