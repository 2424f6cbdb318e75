//! Everything the store holds about one person, for a data subject's access request
//! (`greenrich export --chat-id ID --format json`): their rows of every table, as JSON.

use serde_json::{Map, Value};
use sqlx::{Column, Row};

use super::conn::on_conn;
use super::read::StoreReader;
use super::StoreError;
use crate::suppression::SuppressionKey;

/// The tables that hold people, each with the column that names them.
const TABLES: [(&str, &str); 5] = [
    ("contacts", "chat_id"),
    ("products", "chat_id"),
    ("changes", "chat_id"),
    ("failures", "key"),
    ("input_rows", "chat_id"),
];

/// Reads every column of `$rows` (of one engine) into JSON objects: text, integers and reals
/// as they are, `raw_json` as the JSON it holds.
macro_rules! to_objects {
    ($rows:expr) => {
        $rows
            .iter()
            .map(|row| {
                let mut object = Map::new();
                for (i, column) in row.columns().iter().enumerate() {
                    let value = if let Ok(text) = row.try_get::<Option<String>, _>(i) {
                        match (column.name(), text) {
                            ("raw_json", Some(raw)) => {
                                serde_json::from_str(&raw).unwrap_or(Value::String(raw))
                            }
                            (_, text) => text.map_or(Value::Null, Value::String),
                        }
                    } else if let Ok(n) = row.try_get::<Option<i64>, _>(i) {
                        n.map_or(Value::Null, Value::from)
                    } else {
                        row.try_get::<Option<f64>, _>(i)
                            .ok()
                            .flatten()
                            .map_or(Value::Null, Value::from)
                    };
                    object.insert(column.name().to_string(), value);
                }
                Value::Object(object)
            })
            .collect::<Vec<Value>>()
    };
}

impl StoreReader {
    /// What the store holds about the person whose keys are `keys` (chat ids, Telegram handles;
    /// the other side of each known handle is added): their rows of every table, their Telegram
    /// handles, and whether they are on the do-not-process list.
    pub(crate) async fn person(&mut self, keys: &[String]) -> Result<Value, StoreError> {
        const HANDLES: &str = "SELECT * FROM handles WHERE handle = $1 OR chat_id = $1";
        Ok(on_conn!(&mut self.conn, c => {
            let mut keys = keys.to_vec();
            let mut handles = Vec::new();
            for key in keys.clone() {
                let rows = sqlx::query(HANDLES).bind(&key).fetch_all(&mut *c).await?;
                for row in &rows {
                    for side in ["handle", "chat_id"] {
                        let other: String = row.try_get(side)?;
                        if !keys.contains(&other) {
                            keys.push(other);
                        }
                    }
                }
                handles.extend(to_objects!(rows));
            }
            let mut person = Map::new();
            person.insert("keys".into(), Value::from(keys.clone()));
            for (table, column) in TABLES {
                let sql = format!("SELECT * FROM {table} WHERE {column} = $1");
                let mut found = Vec::new();
                for key in &keys {
                    let rows = sqlx::query(&sql).bind(key).fetch_all(&mut *c).await?;
                    found.extend(to_objects!(rows));
                }
                person.insert(table.into(), Value::Array(found));
            }
            person.insert("handles".into(), Value::Array(handles));
            let list_key: Option<String> =
                sqlx::query_scalar(super::erase::READ_LIST_KEY)
                    .fetch_optional(&mut *c)
                    .await?;
            let mut suppressed = false;
            if let Some(list_key) = list_key.as_deref().and_then(SuppressionKey::from_hex) {
                for key in &keys {
                    let hash = list_key.digest_hex(key);
                    let listed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM suppressed WHERE key_hash = $1")
                        .bind(&hash)
                        .fetch_one(&mut *c)
                        .await?;
                    suppressed |= listed > 0;
                }
            }
            person.insert("do_not_process".into(), Value::Bool(suppressed));
            Value::Object(person)
        }))
    }
}
