//! Telegram handles: a phone number (`+digits`) or `@username` read from the input is asked to
//! `checkAccount` once; its chat id is kept in `handles` (by the writer), and from then on the
//! planner sees the chat id in its place, so the handle costs no call again.

use super::conn::on_conn;
use super::plan::StagedKeys;
use super::StoreError;

/// Each staged handle whose chat id is known, with that chat id: once, at the first line any of
/// its handles stood on.
const RESOLVED: &str = "CREATE TEMP TABLE resolved_handles AS
     SELECT h.chat_id, MIN(i.phone) AS phone, MIN(i.line) AS line
     FROM input_keys i JOIN handles h ON h.handle = i.chat_id
     GROUP BY h.chat_id";

/// The handles, replaced next by their chat ids.
const DROP_KNOWN_HANDLES: &str =
    "DELETE FROM input_keys WHERE chat_id IN (SELECT handle FROM handles)";

/// A chat id that was staged itself too keeps the earlier line, and gets a phone number if it
/// had none.
const MERGE_INTO_STAGED_IDS: &str = "UPDATE input_keys SET
         line = CASE WHEN r.line < input_keys.line THEN r.line ELSE input_keys.line END,
         phone = COALESCE(input_keys.phone, r.phone)
     FROM resolved_handles r WHERE r.chat_id = input_keys.chat_id";

/// The other chat ids are put in.
const ADD_KNOWN_IDS: &str = "INSERT INTO input_keys (chat_id, phone, line)
     SELECT r.chat_id, r.phone, r.line FROM resolved_handles r
     WHERE NOT EXISTS (SELECT 1 FROM input_keys k WHERE k.chat_id = r.chat_id)";

/// The staged handles still to be resolved.
const HANDLES_LEFT: &str =
    "SELECT COUNT(*) FROM input_keys WHERE chat_id LIKE '+%' OR chat_id LIKE '@%'";

impl StagedKeys {
    /// Replaces the staged Telegram handles whose chat id is known by that chat id; returns how
    /// many were replaced, and how many handles are left (to be checked by the fetch stage, if
    /// they are due).
    pub(crate) async fn follow_handles(&mut self) -> Result<(u64, u64), StoreError> {
        let counts = on_conn!(&mut self.conn, c => {
            let mut tx = sqlx::Connection::begin(c).await?;
            sqlx::query(RESOLVED).execute(&mut *tx).await?;
            let dropped = sqlx::query(DROP_KNOWN_HANDLES).execute(&mut *tx).await?;
            sqlx::query(MERGE_INTO_STAGED_IDS).execute(&mut *tx).await?;
            sqlx::query(ADD_KNOWN_IDS).execute(&mut *tx).await?;
            sqlx::query("DROP TABLE resolved_handles").execute(&mut *tx).await?;
            let left: i64 = sqlx::query_scalar(HANDLES_LEFT).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            (dropped.rows_affected(), left as u64)
        });
        Ok(counts)
    }
}
