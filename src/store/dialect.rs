//! What a store's engine must say in its own words: the statements whose text differs between
//! SQLite and PostgreSQL. Each engine's module fills one [`Dialect`].

/// The statements whose text differs between the engines.
pub(crate) struct Dialect {
    /// The keys as they are read (`chat_id`, `phone`, `line`), duplicates too.
    pub(crate) create_staged_keys: &'static str,
    /// Turns `staged_keys` into `input_keys`: each key once, with its first line, found by
    /// `chat_id` and listed by `line`.
    pub(crate) finish_staging: &'static [&'static str],
    /// How the plan walks the input keys to find the never-fetched ones in a store that holds
    /// contacts: in key order, so that its look-ups in the contacts' index come in order too.
    pub(crate) walk_keys_in_key_order: &'static str,
    /// Run first on the connection that erases people (see [`super::erase`]).
    pub(crate) erase_session: &'static [&'static str],
    /// Run first on the writer's connection.
    pub(crate) writer_session: Option<&'static str>,
    /// The plan's due keys, numbered in the order they are inserted (`seq`).
    pub(crate) create_due_keys: &'static str,
    /// Run first in the plan's transaction (PostgreSQL: one snapshot for all its queries).
    pub(crate) plan_isolation: Option<&'static str>,
    /// The plan's snapshot, kept for publishing its keys (PostgreSQL).
    pub(crate) plan_snapshot: Option<&'static str>,
    /// The start of the earliest run whose contacts are fresh for a run that began at `$1`.
    pub(crate) runs_not_over: &'static str,
    /// A table's column names (`$1`), in order.
    pub(crate) table_columns: &'static str,
}

/// The start of the earliest run whose contacts count as fresh for a run that began at $1:
/// the unbroken chain of runs since the last one that completed (interrupted, crashed, stopped
/// early, or still going: this one included), the runs that ended after this one began (workers
/// of a shared store that ran beside it), and whatever else an engine adds.
macro_rules! runs_not_over {
    ($($extra:literal)?) => {
        concat!(
            "SELECT MIN(started_at) FROM runs
             WHERE id > (SELECT COALESCE(MAX(id), 0) FROM runs WHERE outcome = 'completed')
                OR finished_at >= $1"
            $(, $extra)?
        )
    };
}
pub(crate) use runs_not_over;
