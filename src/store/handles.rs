//! Telegram handles: a phone number (`+digits`) or `@username` read from the input is asked to
//! `checkAccount` once; its chat id is kept in `handles` (by the writer), and from then on the
//! planner sees the chat id in its place, so the handle costs no call again.

use super::conn::on_conn;
use super::plan::StagedKeys;
use super::StoreError;

/// Each staged handle whose chat id is known, put in as that chat id (once, at the first line
/// any of its handles or the id itself stood on).
const ADD_KNOWN_IDS: &str = "INSERT INTO input_keys (chat_id, phone, line)
     SELECT h.chat_id, MIN(i.phone), MIN(i.line)
     FROM input_keys i JOIN handles h ON h.handle = i.chat_id
     WHERE true
     GROUP BY h.chat_id
     ON CONFLICT (chat_id) DO UPDATE SET
         line = CASE WHEN excluded.line < input_keys.line THEN excluded.line ELSE input_keys.line END,
         phone = COALESCE(input_keys.phone, excluded.phone)";

/// The handles just replaced by their chat ids.
const DROP_KNOWN_HANDLES: &str =
    "DELETE FROM input_keys WHERE chat_id IN (SELECT handle FROM handles)";

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
            sqlx::query(ADD_KNOWN_IDS).execute(&mut *tx).await?;
            let dropped = sqlx::query(DROP_KNOWN_HANDLES).execute(&mut *tx).await?;
            let left: i64 = sqlx::query_scalar(HANDLES_LEFT).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            (dropped.rows_affected(), left as u64)
        });
        Ok(counts)
    }
}
