//! Deterministic, realistic contact answers for the sandbox: the same chat id always gets the same
//! answer. Names in many scripts and names that break naive CSV and spreadsheets, business
//! accounts with product cards, missing fields and null prices.

use serde_json::{json, Value};

use crate::chat_id::Messenger;

const NAMES: &[&str] = &[
    "Ivan Petrov",
    "Анна Смирнова",
    "Ходабрыш Пробешёлов",
    "María José García",
    "Zoë O'Connor",
    "محمد الأحمد",
    "李小龙",
    "田中 太郎",
    "김민준",
    "प्रिया शर्मा",
    "Ayşe Yılmaz",
    "Θεόδωρος Παπαδόπουλος",
    "Nguyễn Văn An",
    "Jan \"Johnny\" Kowalski",
    "Smith, John",
    "Line one\nLine two",
    "=HYPERLINK(\"http://evil.example\",\"click\")",
    "+1 555 trick",
    "-2+3",
    "@admin",
    "🌸 Flower Shop 🌸",
    "  Padded Name  ",
];

const CATEGORIES: &[&str] = &[
    "Automotive Dealership",
    "Bakery",
    "Beauty, Cosmetic & Personal Care",
    "Shopping & Retail",
    "Restaurant",
];

const PRODUCTS: &[&str] = &[
    "Замена масла",
    "Техническое обслуживание",
    "Croissant",
    "Gift card \"Gold\"",
    "Haircut, long",
    "=1+1",
];

/// A stable 64-bit hash (FNV-1a), so answers do not change between runs or Rust versions.
pub(crate) fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// What `checkAccount` answers for `handle`: four in five have an account, with a stable id.
pub(crate) fn account(handle: &str) -> Value {
    let hash = stable_hash(handle);
    if hash.is_multiple_of(5) {
        return json!({"exist": false, "chatId": ""});
    }
    json!({"exist": true, "chatId": (100_000_000 + hash % 8_900_000_000).to_string()})
}

/// The answer body for `chat_id`.
pub(crate) fn contact(chat_id: &str, messenger: Messenger, edition: u32) -> Value {
    let mut rng = fastrand::Rng::with_seed(stable_hash(chat_id));
    let has_account = rng.u8(0..10) != 0;
    let first = if has_account {
        NAMES[rng.usize(0..NAMES.len())]
    } else {
        ""
    };
    let edited = edited(first, edition);
    let name = edited.as_str();
    let in_phone_book = rng.bool();
    let last_seen_secs = 1_754_000_000 + rng.i64(0..10_000_000);
    let last_seen = match (has_account, rng.u8(0..4)) {
        (false, _) => Value::Null,
        (true, 0) => json!(last_seen_secs * 1000),
        (true, 1) => json!(last_seen_secs.to_string()),
        _ => json!(last_seen_secs),
    };
    let avatar = if has_account && rng.bool() {
        format!(
            "https://pps.whatsapp.net/v/t61/{:x}.jpg",
            stable_hash(chat_id)
        )
    } else {
        String::new()
    };
    let contact_name = if in_phone_book { name } else { "" };
    let mut body = json!({
        "avatar": avatar,
        "name": name,
        "contactName": contact_name,
        "chatId": chat_id,
        "lastSeen": last_seen,
    });
    match messenger {
        Messenger::Max => return body,
        Messenger::Telegram => {
            add_telegram(&mut body, chat_id, last_seen_secs, &mut rng);
            return body;
        }
        Messenger::Whatsapp => {}
    }
    let is_business = has_account && rng.u8(0..3) == 0;
    body["email"] = json!("");
    body["category"] = json!("");
    body["description"] = json!("");
    body["products"] = json!([]);
    body["isArchive"] = json!(rng.u8(0..10) == 0);
    body["isDisappearing"] = json!(false);
    body["isMute"] = json!(rng.u8(0..8) == 0);
    body["messageExpiration"] = json!(0);
    body["muteExpiration"] = Value::Null;
    body["isBusiness"] = json!(is_business);
    if is_business {
        add_business(&mut body, &mut rng);
    }
    vary(&mut body, &mut rng);
    body
}

/// Telegram's own fields; the last seen time and the number may be hidden (0).
fn add_telegram(body: &mut Value, chat_id: &str, last_seen_secs: i64, rng: &mut fastrand::Rng) {
    let shown = rng.u8(0..3) != 0;
    let phone = 79_000_000_000 + stable_hash(chat_id) % 1_000_000_000;
    body["chatType"] = json!("user");
    body["lastSeen"] = json!(if shown { last_seen_secs } else { 0 });
    body["phoneNumber"] = json!(if shown { phone } else { 0 });
    body["username"] = json!(format!("user{}", stable_hash(chat_id) % 100_000));
    body["isPremium"] = json!(rng.u8(0..5) == 0);
    body["isVerified"] = json!(false);
    body["isScam"] = json!(false);
    body["description"] = json!(if rng.bool() {
        ""
    } else {
        "Bio: fresh flowers daily"
    });
}

/// The name of a contact at `edition`: each change renames it, a field a CRM keeps, in both
/// messengers' answers.
fn edited(name: &str, edition: u32) -> String {
    match edition {
        0 => name.to_string(),
        n => format!("{name} (edition {n})").trim_start().to_string(),
    }
}

/// A business account's e-mail, category, description and products.
fn add_business(body: &mut Value, rng: &mut fastrand::Rng) {
    let category = CATEGORIES[rng.usize(0..CATEGORIES.len())];
    body["email"] = json!(format!("info{}@shop.example", rng.u16(..)));
    body["category"] = json!(category);
    body["description"] = json!(format!("{category}: open 9–18, call us"));
    body["products"] = Value::Array((0..rng.usize(0..5)).map(|i| product(rng, i)).collect());
}

/// The answer's shape as it varies between API versions.
fn vary(body: &mut Value, rng: &mut fastrand::Rng) {
    if rng.u8(0..4) == 0 {
        // Fields the API may add later must survive in raw_json.
        body["someFutureField"] = json!({ "nested": [1, 2, 3] });
    }
    if rng.u8(0..6) == 0 {
        // Older API versions omitted fields.
        if let Some(obj) = body.as_object_mut() {
            obj.remove("contactName");
            obj.remove("isBusiness");
        }
    }
}

fn product(rng: &mut fastrand::Rng, index: usize) -> Value {
    let id = format!(
        "{}",
        42_079_728_159_u64 + rng.u64(0..1_000_000_000) + index as u64
    );
    let mut item = json!({
        "id": id,
        "imageUrls": {
            "requested": format!("https://mmg.whatsapp.net/v/t45/{id}.jpg?stp=dst-jpg_p100x100"),
            "original": format!("https://mmg.whatsapp.net/v/t45/{id}.jpg"),
        },
        "reviewStatus": { "whatsapp": if rng.u8(0..5) == 0 { "PENDING" } else { "APPROVED" } },
        "availability": "in stock",
        "name": PRODUCTS[rng.usize(0..PRODUCTS.len())],
        "price": if rng.bool() { Value::Null } else { json!(format!("{}.00", rng.u32(100..100_000))) },
        "isHidden": rng.u8(0..6) == 0,
    });
    if rng.bool() {
        item["description"] = json!("От 1000 р.");
    }
    item
}

/// The same answer with wrong JSON types in its fields (a fault the client must survive).
pub(crate) fn with_wrong_types(mut body: Value) -> Value {
    body["isBusiness"] = json!("true");
    body["isMute"] = json!("false");
    body["name"] = json!(12345);
    body["products"] = if stable_hash(&body.to_string()).is_multiple_of(2) {
        json!({})
    } else {
        json!([{ "id": 7, "price": 12, "isHidden": "false", "imageUrls": "none" }])
    };
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_deterministic_and_varied() {
        let a = contact("79001234567@c.us", Messenger::Whatsapp, 0);
        assert_eq!(a, contact("79001234567@c.us", Messenger::Whatsapp, 0));
        let answers: Vec<Value> = (0..200)
            .map(|i| contact(&format!("7900{i:07}@c.us"), Messenger::Whatsapp, 0))
            .collect();
        assert!(answers.iter().any(|a| a["isBusiness"] == json!(true)));
        assert!(answers.iter().any(|a| a["name"] == json!("")));
        assert!(answers.iter().any(|a| a["products"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["price"].is_null()))));
        let max = contact("10000000", Messenger::Max, 0);
        assert!(max.get("products").is_none());
    }
}
