//! Many workers, one store (PostgreSQL only). Several greenrich processes, on one host or many,
//! share a store's work:
//! - each instance is used by one worker at a time: a worker leases it with a session advisory
//!   lock on the connection it keeps open for its whole run, so the lease ends when the process
//!   does, however it ends;
//! - due keys are published to `work_queue` and claimed in batches with `FOR UPDATE SKIP LOCKED`
//!   (a claim carries its worker and a time it ends, pushed on by the worker's heartbeat: after
//!   pgmq's visibility timeout); a key's result marks its row done in the same transaction as the
//!   contact, and the claims a worker did not finish go back when it ends, or when their time
//!   passes if it died;
//! - `workers` records each worker (host, pid, instances), and `status` shows the live ones.
//!
//! These types exist for a PostgreSQL store only ([`super::Store::shared`]): a SQLite store has
//! one run at a time (its file lock), which holds every instance and reads its own plan.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::Mutex;

use super::ledger::RunOptions;
use super::plan::DueKey;
use super::{StoreError, WorkerId};
use crate::api::Instance;
use crate::domain::Rate;

/// Advisory lock keys: the first of the pair names what is locked.
const INSTANCE_LOCK: &str = "greenrich instance";

/// A live worker, as `status` shows it.
pub(crate) struct LiveWorker {
    pub(crate) id: i64,
    pub(crate) host: String,
    pub(crate) pid: i64,
    pub(crate) instances: String,
    pub(crate) since: String,
}

/// The part of a PostgreSQL store its workers share: the session this process keeps open for
/// its whole run (its instance leases are session locks on it), and a way to open others.
pub(crate) struct SharedStore {
    session: Mutex<PgConnection>,
    options: PgConnectOptions,
}

impl SharedStore {
    pub(super) fn new(session: PgConnection, options: PgConnectOptions) -> SharedStore {
        SharedStore {
            session: Mutex::new(session),
            options,
        }
    }

    /// Leases those of `instances` no other worker holds, and returns them.
    pub(crate) async fn lease_instances(
        &self,
        instances: &[Instance],
    ) -> Result<Vec<Instance>, StoreError> {
        let mut session = self.session.lock().await;
        let mut leased = Vec::new();
        for instance in instances {
            let got: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))")
                    .bind(INSTANCE_LOCK)
                    .bind(&instance.id)
                    .fetch_one(&mut *session)
                    .await?;
            if got {
                leased.push(instance.clone());
            }
        }
        Ok(leased)
    }

    /// Records this process as a worker of run `run_id` with `instances`.
    pub(crate) async fn join(
        &self,
        run_id: i64,
        instances: &[Instance],
    ) -> Result<WorkerId, StoreError> {
        let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO workers (run_id, host, pid, instances, session_pid)
             VALUES ($1, $2, $3, $4, pg_backend_pid()) RETURNING id",
        )
        .bind(run_id)
        .bind(host_name())
        .bind(i64::from(std::process::id()))
        .bind(ids.join(","))
        .fetch_one(&mut *self.session.lock().await)
        .await?;
        Ok(WorkerId(id))
    }

    /// Says `worker` is alive: its claims last `lease` from now; `spacing` is its pacer's now.
    pub(crate) async fn heartbeat(
        &self,
        worker: WorkerId,
        lease: Duration,
        spacing: Option<Duration>,
    ) -> Result<(), StoreError> {
        let mut session = self.session.lock().await;
        sqlx::query(
            "UPDATE work_queue SET claimed_until = now() + make_interval(secs => $2)
             WHERE claimed_by = $1 AND done_at IS NULL",
        )
        .bind(worker.0)
        .bind(lease.as_secs_f64())
        .execute(&mut *session)
        .await?;
        sqlx::query("UPDATE workers SET heartbeat_at = now(), spacing_ms = $2 WHERE id = $1")
            .bind(worker.0)
            .bind(spacing.map(|s| s.as_secs_f64() * 1000.0))
            .execute(&mut *session)
            .await?;
        Ok(())
    }

    /// The spacing (ms) the workers that last paced any of `instances` at `rate` said they had
    /// at their last heartbeat, within `within` of now, and their run. (A run that ended says it
    /// in its summary: see [`super::Store::last_spacing`].)
    pub(crate) async fn workers_spacing(
        &self,
        instances: &[&str],
        rate: Rate,
        within: Duration,
    ) -> Result<Option<(i64, f64)>, StoreError> {
        let rows: Vec<(i64, f64, String, String)> = sqlx::query_as(
            "SELECT w.run_id, w.spacing_ms, w.instances, r.options
             FROM workers w JOIN runs r ON r.id = w.run_id
             WHERE w.spacing_ms IS NOT NULL
               AND w.heartbeat_at > now() - make_interval(secs => $1)
             ORDER BY w.heartbeat_at DESC LIMIT 20",
        )
        .bind(within.as_secs_f64())
        .fetch_all(&mut *self.session.lock().await)
        .await?;
        Ok(rows
            .into_iter()
            .find_map(|(run, spacing, theirs, options)| {
                let options: RunOptions = serde_json::from_str(&options).ok()?;
                let shared = theirs.split(',').any(|id| instances.contains(&id));
                (shared && options.rps_per_instance == rate && spacing.is_finite() && spacing > 0.0)
                    .then_some((run, spacing))
            }))
    }

    /// Fails when the session holding this worker's instance leases is gone.
    pub(crate) async fn check_session(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.session.lock().await)
            .await?;
        Ok(())
    }

    /// `worker` is done: the keys it claimed and did not finish go back to the queue. (On a
    /// connection of its own: the session may be the reason the worker stops.)
    pub(crate) async fn leave(&self, worker: WorkerId) -> Result<(), StoreError> {
        let mut conn = self.options.connect().await?;
        sqlx::query(
            "UPDATE work_queue SET claimed_by = NULL, claimed_until = NULL
             WHERE claimed_by = $1 AND done_at IS NULL",
        )
        .bind(worker.0)
        .execute(&mut conn)
        .await?;
        sqlx::query("UPDATE workers SET finished_at = now() WHERE id = $1")
            .bind(worker.0)
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}

/// The store's queue of due keys, on the planner's connection: workers claim keys from it in
/// batches (see the module's notes).
pub(crate) struct WorkQueue {
    conn: PgConnection,
}

impl WorkQueue {
    /// Publishes the plan's due keys (the temporary `due_keys` on `conn`), made in `snapshot`, to
    /// the shared queue. A key already there and not done is left as it is (to do, or claimed by
    /// a worker); a done key is reopened only when the plan saw that result (it is in the plan's
    /// snapshot) and still found the key due.
    pub(super) async fn publish(
        mut conn: PgConnection,
        snapshot: Option<&str>,
    ) -> Result<WorkQueue, StoreError> {
        sqlx::query(
            "INSERT INTO work_queue (key, phone, position)
             SELECT chat_id, phone, seq FROM due_keys
             ON CONFLICT (key) DO UPDATE SET phone = excluded.phone,
               position = excluded.position, claimed_by = NULL, claimed_until = NULL,
               done_at = NULL, done_xid = NULL
             WHERE work_queue.done_at IS NOT NULL
               AND pg_visible_in_snapshot(work_queue.done_xid, $1::pg_snapshot)",
        )
        .bind(snapshot)
        .execute(&mut conn)
        .await?;
        Ok(WorkQueue { conn })
    }

    /// Claims up to `limit` keys of the shared queue after position `after` for `worker`, for
    /// `lease` (its heartbeat pushes that on), in queue order. (Claiming after the last claim
    /// skips the done rows before it, which the index keeps until a vacuum.)
    pub(crate) async fn claim(
        &mut self,
        worker: WorkerId,
        lease: Duration,
        after: i64,
        limit: i64,
    ) -> Result<Vec<DueKey>, StoreError> {
        let mut keys: Vec<(String, Option<String>, i64)> = sqlx::query_as(
            "UPDATE work_queue q SET claimed_by = $1,
               claimed_until = now() + make_interval(secs => $2)
             FROM (SELECT key FROM work_queue
                   WHERE done_at IS NULL AND position > $4
                     AND (claimed_until IS NULL OR claimed_until < now())
                   ORDER BY position LIMIT $3 FOR UPDATE SKIP LOCKED) free
             WHERE q.key = free.key
             RETURNING q.key, q.phone, q.position",
        )
        .bind(worker.0)
        .bind(lease.as_secs_f64())
        .bind(limit)
        .bind(after)
        .fetch_all(&mut self.conn)
        .await?;
        keys.sort_by_key(|(_, _, position)| *position);
        Ok(keys
            .into_iter()
            .map(|(chat_id, phone, seq)| DueKey {
                seq,
                chat_id,
                phone,
            })
            .collect())
    }

    /// Keys still to do that other workers hold (their claims may come back).
    pub(crate) async fn held_by_others(&mut self, worker: WorkerId) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM work_queue
             WHERE done_at IS NULL AND claimed_by IS DISTINCT FROM $1",
        )
        .bind(worker.0)
        .fetch_one(&mut self.conn)
        .await?)
    }
}

/// The fence of a worker's writes, in the writer's transaction `tx`: marks done the queue rows
/// of those of `keys` that `worker` still holds, and returns them. The writer then writes only
/// their results: a key whose claim passed to another worker is that worker's to write.
pub(super) async fn finish_claims(
    tx: &mut PgConnection,
    worker: WorkerId,
    keys: &[&str],
) -> Result<HashSet<String>, StoreError> {
    const ROWS_PER_STATEMENT: usize = 100;
    let mut held = HashSet::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::new(
            "UPDATE work_queue SET done_at = clock_timestamp(), \
             done_xid = pg_current_xact_id(), claimed_by = NULL, claimed_until = NULL \
             WHERE done_at IS NULL AND claimed_by = ",
        );
        q.push_bind(worker.0).push(" AND key IN ");
        q.push_tuples(chunk, |mut row, key| {
            row.push_bind(*key);
        });
        q.push(" RETURNING key");
        let done: Vec<String> = q.build_query_scalar().fetch_all(&mut *tx).await?;
        held.extend(done);
    }
    Ok(held)
}

/// This machine's name, for the worker's row.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The workers of a PostgreSQL store (on connection `c`) that are running: their session is
/// open (and, in case the server has given its process id to another session since, they said
/// so within `within`).
pub(crate) async fn live_workers(
    c: &mut PgConnection,
    within: Duration,
) -> Result<Vec<LiveWorker>, StoreError> {
    let rows: Vec<(i64, String, i64, String, String)> = sqlx::query_as(
        "SELECT id, host, pid, instances, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
         FROM workers
         WHERE finished_at IS NULL AND heartbeat_at > now() - make_interval(secs => $1)
           AND session_pid IN (SELECT pid FROM pg_stat_activity)
         ORDER BY id",
    )
    .bind(within.as_secs_f64())
    .fetch_all(c)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, host, pid, instances, since)| LiveWorker {
            id,
            host,
            pid,
            instances,
            since,
        })
        .collect())
}
