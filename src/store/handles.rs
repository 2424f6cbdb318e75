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

impl StagedKeys {
    /// Replaces the staged Telegram handles whose chat id is known by that chat id; returns how
    /// many were replaced. Handles still unknown stay, to be checked by the fetch stage.
    pub(crate) async fn follow_handles(&mut self) -> Result<u64, StoreError> {
        let replaced = on_conn!(&mut self.conn, c => {
            let mut tx = sqlx::Connection::begin(c).await?;
            sqlx::query(ADD_KNOWN_IDS).execute(&mut *tx).await?;
            let dropped = sqlx::query(DROP_KNOWN_HANDLES).execute(&mut *tx).await?;
            tx.commit().await?;
            dropped.rows_affected()
        });
        Ok(replaced)
    }
}
