//! Results land on the user's own rows: row links, the `enriched` view, the files people really
//! have (Excel's Russian CSV, UTF-16), and the wrong-column guard.

use std::sync::atomic::Ordering::Relaxed;

use crate::helpers::*;

/// A customer list as Excel saves it in a Russian locale: `;`, Windows-1251, a Cyrillic header.
fn russian_excel_csv(rows: usize) -> Vec<u8> {
    let mut text = String::from("Имя;Телефон;Город\r\n");
    for i in 0..rows {
        text.push_str(&format!(
            "Клиент {i};+7 (900) {:03}-{:02}-{:02};Москва\r\n",
            100 + i / 100,
            10 + (i / 10) % 10,
            10 + i % 10
        ));
    }
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1251.encode(&text);
    assert!(!unmappable);
    bytes.into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_russian_excel_export_is_read_with_its_delimiter_and_encoding() {
    let env = env_with(fast()).await;
    env.write("клиенты.csv", &russian_excel_csv(200));
    let run = env.enrich("клиенты.csv", "out.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("column 'Телефон', delimiter ';', encoding windows-1251"),
        "{}",
        run.stderr
    );
    let db = env.path("out.db");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM contacts").await, 200);
    assert_eq!(
        rows(
            &db,
            "SELECT source, row_ref, input_value, chat_id, status FROM enriched WHERE row_ref = '1'"
        )
        .await,
        vec![vec![
            Some("клиенты.csv".into()),
            Some("1".into()),
            Some("+7 (900) 100-10-10".into()),
            Some("79001001010@c.us".into()),
            Some("enriched".into()),
        ]]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_utf16_unicode_text_export_is_read() {
    let env = env_with(fast()).await;
    // Excel's "Unicode text": UTF-16 LE with a BOM, tab-separated.
    let text = "Name\tPhone\r\nAnna\t79001112233\r\nБорис\t79001112244\r\n";
    let mut bytes = vec![0xff, 0xfe];
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    env.write("unicode.txt", &bytes);
    let run = env.enrich("unicode.txt", "out.db", &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("delimiter 'tab', encoding utf-16le"),
        "{}",
        run.stderr
    );
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM contacts").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_crm_table_joins_its_results_by_its_own_ids() {
    let env = env_with(fast()).await;
    let crm = env.path("crm.db");
    execute(
        &crm,
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, phone TEXT);
         INSERT INTO customers VALUES (17, 'Anna', '+7 (900) 123-45-67'), (203, 'Boris', 'n/a'),
           (5001, 'Vera', '8 900 765-43-21'), (42, 'Dup', '79001234567');",
    )
    .await;
    let input = format!("sqlite:{}", crm.display());
    let run = env
        .enrich(
            &input,
            crm.to_str().unwrap(),
            &["--table", "customers", "--default-country", "RU"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let joined = rows(
        &crm,
        "SELECT c.id, c.name, e.chat_id, e.status, e.name IS NOT NULL
         FROM customers c LEFT JOIN enriched e ON e.row_ref = c.id ORDER BY c.id",
    )
    .await;
    let expect = |id: &str, name: &str, chat: Option<&str>, status: &str, named: &str| {
        vec![
            Some(id.to_string()),
            Some(name.to_string()),
            chat.map(str::to_string),
            Some(status.to_string()),
            Some(named.to_string()),
        ]
    };
    assert_eq!(
        joined,
        vec![
            expect("17", "Anna", Some("79001234567@c.us"), "enriched", "1"),
            expect("42", "Dup", Some("79001234567@c.us"), "enriched", "1"),
            expect("203", "Boris", None, "invalid", "0"),
            expect("5001", "Vera", Some("79007654321@c.us"), "enriched", "1"),
        ]
    );
    assert_eq!(
        env.sandbox.stats.answers_per_chat().get("79001234567@c.us"),
        Some(&1),
        "a number held by two rows is one contact, fetched once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_number_and_a_deleted_customer_are_followed_with_one_call() {
    let env = env_with(fast()).await;
    let crm = env.path("crm.db");
    execute(
        &crm,
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, phone TEXT);
         INSERT INTO customers VALUES (1, '79001000001'), (2, '79001000002'), (3, '79001000003');",
    )
    .await;
    let input = format!("sqlite:{}", crm.display());
    let args = ["--table", "customers", "--max-age", "7d"];
    assert_eq!(env.enrich(&input, "out.db", &args).await.code, 0);
    execute(
        &crm,
        "UPDATE customers SET phone = '79001000009' WHERE id = 2; DELETE FROM customers WHERE id = 3;",
    )
    .await;
    let before = env.sandbox.stats.contact_requests.load(Relaxed);
    let run = env.enrich(&input, "out.db", &args).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        env.sandbox.stats.contact_requests.load(Relaxed) - before,
        1,
        "only the new number is fetched"
    );
    assert_eq!(
        rows(
            &env.path("out.db"),
            "SELECT row_ref, chat_id, status FROM enriched ORDER BY row_ref"
        )
        .await,
        vec![
            vec![
                Some("1".into()),
                Some("79001000001@c.us".into()),
                Some("enriched".into())
            ],
            vec![
                Some("2".into()),
                Some("79001000009@c.us".into()),
                Some("enriched".into())
            ],
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_not_reached_by_a_budget_are_pending_and_failures_say_why() {
    let env = env_with(sandbox_one_instance()).await;
    // Row 2 is refused by the API (ids ending in 0000), row 4 holds row 1's number.
    env.write(
        "in.csv",
        b"phone\n79001231111\n79001230000\n79001232222\n79001231111\nnot a phone\n79001233333\n",
    );
    let run = env.enrich("in.csv", "out.db", &["--max-calls", "3"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let statuses = rows(
        &env.path("out.db"),
        "SELECT row_ref, status, error IS NOT NULL FROM enriched ORDER BY CAST(row_ref AS INTEGER)",
    )
    .await;
    let row = |r: &str, status: &str, error: &str| {
        vec![
            Some(r.to_string()),
            Some(status.to_string()),
            Some(error.to_string()),
        ]
    };
    assert_eq!(
        statuses,
        vec![
            row("1", "enriched", "0"),
            row("2", "failed", "1"),
            row("3", "enriched", "0"),
            row("4", "enriched", "0"),
            row("5", "invalid", "1"),
            row("6", "pending", "0"),
        ]
    );
}

fn sandbox_one_instance() -> greenrich::sandbox::Config {
    greenrich::sandbox::Config {
        instances: greenrich::sandbox::default_instances(1),
        ..fast()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_column_of_mostly_invalid_values_stops_before_any_call() {
    let env = env_with(fast()).await;
    // A ;-file read with the wrong delimiter: the only column is the whole line.
    let mut csv = String::from("name;phone\n");
    for i in 0..30 {
        csv.push_str(&format!("Person {i};7900111{i:04}\n"));
    }
    env.write("in.csv", csv.as_bytes());
    let run = env
        .enrich(
            "in.csv",
            "out.db",
            &["--delimiter", ",", "--column", "name;phone"],
        )
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("30 of the first 30 values in column 'name;phone'")
            && run.stderr.contains("probably wrong")
            && run.stderr.contains("'Person 0;79001110000'"),
        "{}",
        run.stderr
    );
    assert_eq!(env.sandbox.stats.requests.load(Relaxed), 0);
    // The run that stopped is closed in the ledger with what stopped it.
    let ledger = rows(
        &env.path("out.db"),
        "SELECT outcome, finished_at IS NOT NULL, summary LIKE '%probably wrong%' FROM runs",
    )
    .await;
    assert_eq!(
        ledger,
        vec![vec![
            Some("failed".into()),
            Some("1".into()),
            Some("1".into())
        ]]
    );
    let status = env.run(&["status", "--db", "out.db"]).await;
    assert!(
        status.stdout.contains("#1") && status.stdout.contains("failed"),
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains("running") && !status.stdout.contains("crashed"),
        "{}",
        status.stdout
    );

    let run = env
        .enrich(
            "in.csv",
            "out.db",
            &["--column", "name", "--allow-mostly-invalid"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        count(
            &env.path("out.db"),
            "SELECT COUNT(*) FROM enriched WHERE status = 'invalid'"
        )
        .await,
        30
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_as_whatsapp_writes_them_cost_a_call_and_a_refused_lid_is_a_rejected_key() {
    let env = env_with(fast()).await;
    env.write(
        "in.csv",
        b"phone\n5215512345678@c.us\n+52 1 55 1234 5678\n120650379300963@lid\n+54 11 15 5874 9895\n",
    );
    let run = env.enrich("in.csv", "out.db", &[]).await;
    // The sandbox refuses @lid ids with 400, as the real API may.
    assert_eq!(run.code, 2, "{}", run.stderr);
    let db = env.path("out.db");
    assert_eq!(
        rows(
            &db,
            "SELECT chat_id, status FROM enriched ORDER BY CAST(row_ref AS INTEGER)"
        )
        .await,
        vec![
            vec![Some("5215512345678@c.us".into()), Some("enriched".into())],
            vec![Some("5215512345678@c.us".into()), Some("enriched".into())],
            vec![Some("120650379300963@lid".into()), Some("failed".into())],
            vec![Some("5491158749895@c.us".into()), Some("enriched".into())],
        ]
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM failures WHERE reason = 'rejected'"
        )
        .await,
        1
    );
}

/// Reads a CSV written with a BOM and `delimiter` into its rows.
fn read_csv(bytes: &[u8], delimiter: u8) -> Vec<Vec<String>> {
    let text = std::str::from_utf8(bytes).unwrap();
    let text = text.strip_prefix('\u{feff}').expect("a UTF-8 BOM");
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn enriched_csv_gives_back_every_row_in_order_with_its_own_columns() {
    // One instance, so the budget goes to the first rows in input order.
    let env = env_with(sandbox_one_instance()).await;
    let mut input = russian_excel_csv(30);
    // A row that is not a phone number, and one with a formula for a name.
    let (extra, _, _) =
        encoding_rs::WINDOWS_1251.encode("Без номера;нет;Тверь\r\n=1+1;79001009999;Казань\r\n");
    input.extend_from_slice(&extra);
    env.write("клиенты.csv", &input);
    let run = env
        .enrich(
            "клиенты.csv",
            "out",
            &["--format", "csv", "--max-calls", "20"],
        )
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let rows = read_csv(&std::fs::read(env.path("out/enriched.csv")).unwrap(), b';');
    assert_eq!(rows.len(), 33);
    assert_eq!(
        rows[0][..6],
        [
            "Имя",
            "Телефон",
            "Город",
            "whatsapp_chat_id",
            "whatsapp_status",
            "whatsapp_error"
        ]
    );
    assert_eq!(rows[0].len(), 3 + 15);
    assert_eq!(
        rows[1][..5],
        [
            "Клиент 0",
            "+7 (900) 100-10-10",
            "Москва",
            "79001001010@c.us",
            "enriched"
        ]
    );
    assert_eq!(rows[20][4], "enriched");
    assert_eq!(rows[21][4], "pending", "beyond the budget");
    assert_eq!(rows[31][..5], ["Без номера", "нет", "Тверь", "", "invalid"]);
    assert_eq!(
        rows[32][0], "=1+1",
        "the row's own cells are copied as they are"
    );
    for (i, row) in rows[1..31].iter().enumerate() {
        assert_eq!(row[0], format!("Клиент {i}"), "input order");
    }

    // Later, the rest is fetched into the store, and `export` takes the whole list out.
    let run = env.enrich("клиенты.csv", "out", &["--format", "csv"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = env
        .run(&[
            "export",
            "--db",
            "out/greenrich.db",
            "--input",
            "клиенты.csv",
            "--output",
            "later",
            "--prefix",
            "wa_",
        ])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = read_csv(
        &std::fs::read(env.path("later/enriched.csv")).unwrap(),
        b';',
    );
    assert_eq!(rows[0][3], "wa_chat_id");
    assert!(rows[1..31].iter().all(|r| r[4] == "enriched"));
    assert!(env.path("later/contacts.csv").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workbook_with_numeric_phone_cells_is_read_and_given_back() {
    let env = env_with(fast()).await;
    env.write(
        "customers.xlsx",
        include_bytes!("../../samples/customers.xlsx"),
    );
    let run = env
        .enrich(
            "customers.xlsx",
            "out",
            &["--format", "csv", "--default-country", "RU"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let db = env.path("out/greenrich.db");
    assert_eq!(
        rows(
            &db,
            "SELECT input_value, chat_id, status FROM enriched ORDER BY CAST(row_ref AS INTEGER)"
        )
        .await,
        [
            ("79001234567", Some("79001234567@c.us"), "enriched"),
            ("79001234568", Some("79001234568@c.us"), "enriched"),
            ("+7 (900) 123-45-69", Some("79001234569@c.us"), "enriched"),
            ("79001234570", Some("79001234570@c.us"), "enriched"),
            ("не указан", None, "invalid"),
        ]
        .map(|(value, chat, status)| vec![
            Some(value.to_string()),
            chat.map(str::to_string),
            Some(status.to_string())
        ])
    );
    let rows = read_csv(&std::fs::read(env.path("out/enriched.csv")).unwrap(), b',');
    assert_eq!(
        rows.len(),
        6,
        "the header and five rows; empty rows are skipped"
    );
    assert_eq!(
        rows[1][..4],
        ["Анна", "79001234567", "Москва", "79001234567@c.us"]
    );
}
