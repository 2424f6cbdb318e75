//! Store write throughput, without HTTP: 1,000,000 contacts with 2,000,000 products committed
//! through the job's own writer (batched transactions, multi-row prepared statements).
//! Run with `cargo bench --bench store` (release profile); `bench/run.sh writes` runs it too.

#![allow(
    unused_crate_dependencies,
    reason = "the benchmark sees every dependency of the package as its own"
)]
#![allow(
    clippy::expect_used,
    reason = "a benchmark that cannot set up stops with the reason"
)]

use std::time::{Duration, Instant};

use greenrich::Messenger;
use greenrich::{ContactRow, Enriched, ProductRow};
use greenrich::{KeyOutcome, RetryDelays, Store, StoreLocation, Writer};

const CONTACTS: usize = 1_000_000;
const PRODUCTS_PER_CONTACT: usize = 2;
/// Outcomes per commit: what the job's writer commits at most at once.
const BATCH: usize = 500;

fn contact(i: usize) -> KeyOutcome {
    let chat_id = format!("79{:09}@c.us", i);
    let contact = ContactRow {
        chat_id: chat_id.clone(),
        messenger: Messenger::Whatsapp,
        phone: Some(chat_id[..11].to_string()),
        name: Some(format!("Person {i}")),
        contact_name: None,
        email: Some(format!("p{i}@shop.example")),
        category: Some("Bakery".into()),
        description: Some("Fresh bread every morning".into()),
        avatar_url: Some(format!("https://pps.whatsapp.net/v/t61/{i:x}.jpg")),
        is_business: Some(true),
        last_seen_at: Some("2025-08-08T05:46:54Z".into()),
        is_archived: Some(false),
        is_muted: Some(false),
        is_disappearing: Some(false),
        message_expiration: Some(0),
        mute_expiration: None,
        raw_json: format!(
            r#"{{"name":"Person {i}","isBusiness":true,"products":[{{"id":"1"}},{{"id":"2"}}]}}"#
        ),
        fetched_at: "2026-11-21T00:00:00.000Z".into(),
    };
    let products = (0..PRODUCTS_PER_CONTACT)
        .map(|p| ProductRow {
            product_id: format!("{}", 42_000_000 + p),
            position: p as i64,
            name: Some("Croissant".into()),
            description: None,
            price: Some("150.00".into()),
            availability: Some("in stock".into()),
            is_hidden: Some(false),
            review_status: Some("APPROVED".into()),
            image_url: Some("https://mmg.whatsapp.net/v/t45/1.jpg".into()),
            image_preview_url: Some("https://mmg.whatsapp.net/v/t45/1.jpg?stp=p100".into()),
        })
        .collect();
    KeyOutcome::Enriched(Box::new(Enriched {
        contact,
        products,
        handle: None,
    }))
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bench.db");
    let store = Store::open(
        &StoreLocation::Sqlite(path.clone()),
        Duration::from_secs(10),
    )
    .await
    .expect("open the store");
    // No run row: the benchmark's contacts are all new, recorded under run 0.
    let run_id = 0;
    let mut writer = Writer::new(
        &store,
        Messenger::Whatsapp,
        RetryDelays {
            permanent: Duration::from_secs(30 * 86_400),
            transient: Duration::from_secs(3_600),
        },
        run_id,
    )
    .await
    .expect("a writer");
    let now = chrono::Utc::now();
    let mut spent = Duration::ZERO;
    for start in (0..CONTACTS).step_by(BATCH) {
        let batch: Vec<KeyOutcome> = (start..(start + BATCH).min(CONTACTS))
            .map(contact)
            .collect();
        let began = Instant::now();
        writer.commit(&batch, now).await.expect("commit");
        spent += began.elapsed();
    }
    let rows = CONTACTS * (1 + PRODUCTS_PER_CONTACT);
    println!(
        "writes: {CONTACTS} contacts + {} products in {:.2} s of commits = {:.0} rows/s ({:.0} contacts/s)",
        CONTACTS * PRODUCTS_PER_CONTACT,
        spent.as_secs_f64(),
        rows as f64 / spent.as_secs_f64(),
        CONTACTS as f64 / spent.as_secs_f64()
    );
}
